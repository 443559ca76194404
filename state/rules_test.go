package state

import (
	"encoding/json"
	"strings"
	"testing"
)

const (
	sha1 = "1111111111111111111111111111111111111111111111111111111111111111"
	sha2 = "2222222222222222222222222222222222222222222222222222222222222222"
)

// baseState is a valid embedded-mode state exercising every document kind:
// BSP, device.json with pools and ingress, two containers (a provider with
// services.json and a consumer with networking and auto-recovery).
func baseState() map[string]any {
	return map[string]any{
		"#spec":                 SpecSystem1,
		"bsp/run.json":          map[string]any{"linux": "kernel.img", "initrd": "pantavisor", "fdt": "board.dtb", "modules": "modules.squashfs", "firmware": "firmware.squashfs", "addons": []any{}},
		"bsp/drivers.json":      map[string]any{"#spec": "driver-aliases@1", "all": map[string]any{"wifi": []any{"brcmfmac"}}},
		"bsp/kernel.img":        sha1,
		"bsp/pantavisor":        sha1,
		"bsp/board.dtb":         sha1,
		"bsp/modules.squashfs":  sha1,
		"bsp/firmware.squashfs": sha1,
		"device.json": map[string]any{
			"groups": []any{
				map[string]any{"name": "root", "restart_policy": "system", "status_goal": "STARTED", "timeout": 30},
				map[string]any{"name": "app", "restart_policy": "container", "status_goal": "STARTED", "timeout": 30},
			},
			"disks":   []any{map[string]any{"name": "internal", "type": "directory", "path": "/storage/disks/internal", "default": "yes"}},
			"volumes": map[string]any{"pv--devmeta": map[string]any{"persistence": "permanent", "disk": "internal"}},
			"network": map[string]any{"pools": map[string]any{
				"internal": map[string]any{"type": "bridge", "bridge": "pvbr0", "subnet": "10.0.5.0/24", "gateway": "10.0.5.1", "nat": true},
				"lan":      map[string]any{"type": "macvlan", "parent": "eth0", "subnet": "192.168.7.0/24", "gateway": "192.168.7.1"},
			}},
			"ingress": []any{
				map[string]any{"name": "web", "type": "tcp", "external": "0.0.0.0:8080", "provider": "web", "service": "web-http"},
				map[string]any{"name": "api", "type": "http", "external": ":80/api", "provider": "web", "service": "web-http"},
			},
		},
		"web/run.json": map[string]any{
			"#spec": "service-manifest-run@1", "name": "web", "type": "lxc",
			"config": "lxc.container.conf", "root-volume": "root.squashfs", "volumes": []any{},
			"group": "app", "restart_policy": "container", "status_goal": "STARTED",
			"roles":         []any{"nobody"},
			"drivers":       map[string]any{"required": []any{"wifi"}, "optional": []any{"bt"}, "manual": []any{}},
			"storage":       map[string]any{"lxc-overlay": map[string]any{"persistence": "boot"}},
			"network":       map[string]any{"pool": "internal", "hostname": "web", "ip": "10.0.5.10", "mac": "02:00:0a:00:05:0a"},
			"auto_recovery": map[string]any{"policy": "on-failure", "max_retries": 5, "retry_delay": 1, "backoff_factor": 2.0, "reset_window": 300},
		},
		"web/services.json":       map[string]any{"#spec": "service-manifest-xconnect@1", "services": []any{map[string]any{"name": "web-http", "type": "tcp", "port": 80}, map[string]any{"name": "api", "type": "unix", "socket": "/run/api.sock"}}},
		"web/lxc.container.conf":  sha1,
		"web/root.squashfs":       sha2,
		"cli/run.json":            map[string]any{"name": "cli", "type": "lxc", "config": "lxc.container.conf", "root-volume": "root.squashfs", "services": map[string]any{"required": []any{map[string]any{"name": "api", "type": "unix", "target": "/run/api.sock"}}}, "network": map[string]any{"pool": "internal"}},
		"cli/lxc.container.conf":  sha1,
		"cli/root.squashfs":       sha2,
		"_config/web/etc/web.cfg": sha1,
	}
}

// doc returns the JSON object at key, for mutation.
func doc(st map[string]any, key string) map[string]any { return st[key].(map[string]any) }

func encode(t *testing.T, st map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBaseStateIsValid(t *testing.T) {
	st, err := Parse(encode(t, baseState()), Options{})
	if err != nil {
		t.Fatalf("base state: %v", err)
	}
	for _, w := range st.Warnings {
		t.Errorf("unexpected warning: %s", w)
	}
	if len(st.Containers) != 2 || len(st.Pools) != 2 || len(st.Ingress) != 2 || st.BSP == nil {
		t.Fatalf("model incomplete: %d containers, %d pools, %d ingress", len(st.Containers), len(st.Pools), len(st.Ingress))
	}
	web := st.Container("web")
	if web.Network.IP.String() != "10.0.5.10" || web.AutoRecovery.BackoffFactor != 2 || len(web.Roles) != 0 {
		t.Errorf("web parsed wrong: %+v", web)
	}
	cli := st.Container("cli")
	if cli.Group != "app" || cli.RestartPolicy != RestartContainer || cli.Roles[0] != "mgmt" || cli.AutoRecovery.Policy != RecoveryNo {
		t.Errorf("cli defaults wrong: group=%s policy=%s roles=%v", cli.Group, cli.RestartPolicy, cli.Roles)
	}
	if web.Objects["_config/web/etc/web.cfg"] != sha1 {
		t.Errorf("_config object not attached to web: %v", web.Objects)
	}
}

// TestValidationRules: one case per rule; each asserts the exact location of
// the error and a fragment of its message, and that it is the only error.
func TestValidationRules(t *testing.T) {
	tests := []struct {
		name      string
		appengine bool
		mutate    func(st map[string]any)
		where     string
		msg       string
	}{
		{"spec missing", false, func(st map[string]any) { delete(st, "#spec") }, "#spec", "missing"},
		{"spec legacy", false, func(st map[string]any) { st["#spec"] = "pantavisor-multi-platform@1" }, "#spec", "legacy multi-platform"},
		{"spec unknown", false, func(st map[string]any) { st["#spec"] = "foo@2" }, "#spec", "unsupported spec"},
		{"object not a sha", false, func(st map[string]any) { st["web/root.squashfs"] = "abc" }, "web/root.squashfs", "sha256"},
		{"object not a string", false, func(st map[string]any) { st["web/root.squashfs"] = 42 }, "web/root.squashfs", "got a number"},
		{"key escapes trail", false, func(st map[string]any) { st["web/../../etc/passwd"] = sha1 }, "web/../../etc/passwd", "'..'"},
		{"absolute key", false, func(st map[string]any) { st["/etc/passwd"] = sha1 }, "/etc/passwd", "relative"},
		{"container name longer than a file name", false, func(st map[string]any) {
			n := strings.Repeat("x", 256)
			st[n+"/run.json"] = map[string]any{"name": n, "root-volume": "r"}
		}, strings.Repeat("x", 256) + "/run.json", "key has a path segment of 256 bytes: a file name is at most 255"},
		{"object key longer than a file name", false, func(st map[string]any) {
			st["web/"+strings.Repeat("v", 256)] = sha1
		}, "web/" + strings.Repeat("v", 256), "a file name is at most 255"},
		{"key longer than its paths allow", false, func(st map[string]any) {
			st["web/"+strings.Repeat(strings.Repeat("v", 200)+"/", 11)+"x"] = sha1
		}, "web/" + strings.Repeat(strings.Repeat("v", 200)+"/", 11) + "x", "key is 2216 bytes: a key is at most 2048"},
		{"key below an object's", false, func(st map[string]any) { st["web/root.squashfs/x"] = sha1 }, "web/root.squashfs/x", "web/root.squashfs is a file of the revision: no key can be below it"},
		{"key below a document's", false, func(st map[string]any) { st["web/run.json/x.json"] = map[string]any{} }, "web/run.json/x.json", "web/run.json is a file"},
		{"device.json without groups", false, func(st map[string]any) { delete(doc(st, "device.json"), "groups") }, "device.json: groups", "missing"},
		{"device.json not an object", false, func(st map[string]any) { st["device.json"] = []any{} }, "device.json", "must be a JSON object"},
		{"empty groups", false, func(st map[string]any) { doc(st, "device.json")["groups"] = []any{} }, "device.json: groups", "at least one"},
		{"group bad goal", false, func(st map[string]any) {
			doc(st, "device.json")["groups"].([]any)[0].(map[string]any)["status_goal"] = "RUNNING"
		}, `device.json: groups[0] ("root").status_goal`, "MOUNTED, STARTED or READY"},
		{"group bad policy", false, func(st map[string]any) {
			doc(st, "device.json")["groups"].([]any)[1].(map[string]any)["restart_policy"] = "always"
		}, `device.json: groups[1] ("app").restart_policy`, "system or container"},
		{"group negative timeout", false, func(st map[string]any) {
			doc(st, "device.json")["groups"].([]any)[0].(map[string]any)["timeout"] = -5
		}, `device.json: groups[0] ("root").timeout`, "must be >= 0"},
		{"group timeout not a number", false, func(st map[string]any) {
			doc(st, "device.json")["groups"].([]any)[0].(map[string]any)["timeout"] = true
		}, `device.json: groups[0] ("root").timeout`, "must be an integer"},
		{"group duplicate", false, func(st map[string]any) {
			d := doc(st, "device.json")
			d["groups"] = append(d["groups"].([]any), map[string]any{"name": "root"})
		}, `device.json: groups[2] ("root").name`, "duplicate group"},
		{"group no name", false, func(st map[string]any) {
			delete(doc(st, "device.json")["groups"].([]any)[0].(map[string]any), "name")
		}, "device.json: groups[0].name", "missing"},
		{"unknown group", false, func(st map[string]any) { doc(st, "web/run.json")["group"] = "apps" }, "web/run.json: group", `unknown group "apps"`},
		{"name mismatch", false, func(st map[string]any) { doc(st, "web/run.json")["name"] = "www" }, "web/run.json: name", "must match"},
		{"name missing", false, func(st map[string]any) { delete(doc(st, "cli/run.json"), "name") }, "cli/run.json: name", "missing"},
		{"container named _config", false, func(st map[string]any) {
			st["_config/run.json"] = map[string]any{"name": "_config", "root-volume": "root.squashfs"}
			st["_config/root.squashfs"] = sha2
		}, "_config/run.json: name", `"_config" is reserved`},
		{"container bad goal", false, func(st map[string]any) { doc(st, "web/run.json")["status_goal"] = "UP" }, "web/run.json: status_goal", "MOUNTED, STARTED or READY"},
		{"container bad policy", false, func(st map[string]any) { doc(st, "web/run.json")["restart_policy"] = "never" }, "web/run.json: restart_policy", "system or container"},
		{"container bad type", false, func(st map[string]any) { doc(st, "web/run.json")["type"] = "docker" }, "web/run.json: type", "only lxc"},
		{"root-volume missing", false, func(st map[string]any) { delete(st, "web/root.squashfs") }, "web/run.json: root-volume", "no web/root.squashfs"},
		{"root-volume absent", false, func(st map[string]any) { delete(doc(st, "cli/run.json"), "root-volume") }, "cli/run.json: root-volume", "missing"},
		{"root-volume bad handler syntax", false, func(st map[string]any) { doc(st, "web/run.json")["root-volume"] = "dm:" }, "web/run.json: root-volume", "HANDLER:FILE"},
		{"config names an inline JSON", false, func(st map[string]any) {
			doc(st, "web/run.json")["config"] = "lxc.json"
			st["web/lxc.json"] = map[string]any{"lxc.init.cmd": "/bin/sh"}
		}, "web/run.json: config", "inline JSON document, not an object"},
		{"root-volume names the services.json", false, func(st map[string]any) {
			doc(st, "web/run.json")["root-volume"] = "services.json"
		}, "web/run.json: root-volume", "a document of the container, not an object"},
		{"volume missing", false, func(st map[string]any) { doc(st, "web/run.json")["volumes"] = []any{"data.squashfs"} }, "web/run.json: volumes[0]", "no web/data.squashfs"},
		{"config missing", false, func(st map[string]any) { delete(st, "web/lxc.container.conf") }, "web/run.json: config", "no web/lxc.container.conf"},
		{"max_retries negative", false, func(st map[string]any) {
			doc(st, "web/run.json")["auto_recovery"].(map[string]any)["max_retries"] = -1
		}, "web/run.json: auto_recovery.max_retries", "must be >= 0"},
		{"maximum_retry_count alias negative", false, func(st map[string]any) {
			ar := doc(st, "web/run.json")["auto_recovery"].(map[string]any)
			delete(ar, "max_retries")
			ar["maximum_retry_count"] = -2
		}, "web/run.json: auto_recovery.maximum_retry_count", "must be >= 0"},
		{"retry_delay negative", false, func(st map[string]any) {
			doc(st, "web/run.json")["auto_recovery"].(map[string]any)["retry_delay"] = -1
		}, "web/run.json: auto_recovery.retry_delay", "must be >= 0"},
		{"reset_window negative", false, func(st map[string]any) {
			doc(st, "web/run.json")["auto_recovery"].(map[string]any)["reset_window"] = -10
		}, "web/run.json: auto_recovery.reset_window", "must be >= 0"},
		{"backoff_factor negative", false, func(st map[string]any) {
			doc(st, "web/run.json")["auto_recovery"].(map[string]any)["backoff_factor"] = -0.5
		}, "web/run.json: auto_recovery.backoff_factor", "must be >= 0"},
		{"retry_delay fractional", false, func(st map[string]any) {
			doc(st, "web/run.json")["auto_recovery"].(map[string]any)["retry_delay"] = 1.5
		}, "web/run.json: auto_recovery.retry_delay", "must be an integer"},
		{"bad recovery policy", false, func(st map[string]any) {
			doc(st, "web/run.json")["auto_recovery"].(map[string]any)["policy"] = "sometimes"
		}, "web/run.json: auto_recovery.policy", "no, on-failure, always or unless-stopped"},
		{"bad recovery type alias", false, func(st map[string]any) {
			ar := doc(st, "web/run.json")["auto_recovery"].(map[string]any)
			delete(ar, "policy")
			ar["type"] = "sometimes"
		}, "web/run.json: auto_recovery.type", "no, on-failure, always or unless-stopped"},
		{"unknown pool", false, func(st map[string]any) {
			doc(st, "web/run.json")["network"].(map[string]any)["pool"] = "dmz"
		}, "web/run.json: network.pool", `unknown pool "dmz" (pools: internal, lan)`},
		{"empty pool name", false, func(st map[string]any) {
			doc(st, "cli/run.json")["network"] = map[string]any{"pool": ""}
		}, "cli/run.json: network.pool", "must name a pool of device.json network.pools (pools: internal, lan)"},
		{"pool missing subnet", false, func(st map[string]any) {
			delete(doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["lan"].(map[string]any), "subnet")
		}, "device.json: network.pools.lan.subnet", "missing"},
		{"pool bad subnet", false, func(st map[string]any) {
			doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["lan"].(map[string]any)["subnet"] = "192.168.7.0/33"
		}, "device.json: network.pools.lan.subnet", "IPv4 CIDR"},
		{"pool subnet host bits", false, func(st map[string]any) {
			doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["lan"].(map[string]any)["subnet"] = "192.168.7.1/24"
		}, "device.json: network.pools.lan.subnet", "host bits"},
		{"pool subnet too small", false, func(st map[string]any) {
			p := doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["lan"].(map[string]any)
			p["subnet"], p["gateway"] = "192.168.7.0/31", "192.168.7.0"
		}, "device.json: network.pools.lan.subnet", "too small"},
		{"gateway outside subnet", false, func(st map[string]any) {
			doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["lan"].(map[string]any)["gateway"] = "192.168.8.1"
		}, "device.json: network.pools.lan.gateway", "outside the pool's subnet"},
		{"gateway is broadcast", false, func(st map[string]any) {
			doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["lan"].(map[string]any)["gateway"] = "192.168.7.255"
		}, "device.json: network.pools.lan.gateway", "broadcast"},
		{"gateway not an address", false, func(st map[string]any) {
			doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["lan"].(map[string]any)["gateway"] = "gw"
		}, "device.json: network.pools.lan.gateway", "IPv4 address"},
		{"bridge missing", false, func(st map[string]any) {
			delete(doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["internal"].(map[string]any), "bridge")
		}, "device.json: network.pools.internal.bridge", "missing"},
		{"bridge name too long", false, func(st map[string]any) {
			doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["internal"].(map[string]any)["bridge"] = "averyveryverylongbridge"
		}, "device.json: network.pools.internal.bridge", "longer than 15"},
		{"bridge name an iptables wildcard", false, func(st map[string]any) {
			doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["internal"].(map[string]any)["bridge"] = "eth+"
		}, "device.json: network.pools.internal.bridge", `ends in '+', which iptables reads as a wildcard: the pool's rules would match every interface whose name starts with "eth"`},
		{"bridge name iptables' negation", false, func(st map[string]any) {
			doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["internal"].(map[string]any)["bridge"] = "!"
		}, "device.json: network.pools.internal.bridge", "iptables' negation"},
		{"bridge name with a NUL byte", false, func(st map[string]any) {
			doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["internal"].(map[string]any)["bridge"] = "pvbr0\x00x"
		}, "device.json: network.pools.internal.bridge", "ends a name at a NUL byte"},
		{"bridge name with a carriage return", false, func(st map[string]any) {
			doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["internal"].(map[string]any)["bridge"] = "pv\rbr"
		}, "device.json: network.pools.internal.bridge", "white space"},
		{"parent name an iptables wildcard", false, func(st map[string]any) {
			doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["lan"].(map[string]any)["parent"] = "eth+"
		}, "device.json: network.pools.lan.parent", "wildcard"},
		{"parent missing", false, func(st map[string]any) {
			delete(doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["lan"].(map[string]any), "parent")
		}, "device.json: network.pools.lan.parent", "missing"},
		{"pool bad type", false, func(st map[string]any) {
			doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["lan"].(map[string]any)["type"] = "ipvlan"
		}, "device.json: network.pools.lan.type", "bridge or macvlan"},
		{"pool nat not boolean", false, func(st map[string]any) {
			doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["internal"].(map[string]any)["nat"] = "yes"
		}, "device.json: network.pools.internal.nat", "true or false"},
		{"pools overlap", false, func(st map[string]any) {
			p := doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["lan"].(map[string]any)
			p["subnet"], p["gateway"] = "10.0.0.0/16", "10.0.0.1"
		}, "device.json: network.pools.lan.subnet", "overlaps pool internal"},
		{"bridge shared by two pools", false, func(st map[string]any) {
			doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["lan"] = map[string]any{"bridge": "pvbr0", "subnet": "10.9.0.0/24", "gateway": "10.9.0.1"}
		}, "device.json: network.pools.lan.bridge", "already used by pool internal"},
		{"static ip outside pool", false, func(st map[string]any) {
			doc(st, "web/run.json")["network"].(map[string]any)["ip"] = "10.0.6.10"
		}, "web/run.json: network.ip", "outside pool internal"},
		{"static ip network address", false, func(st map[string]any) {
			doc(st, "web/run.json")["network"].(map[string]any)["ip"] = "10.0.5.0"
		}, "web/run.json: network.ip", "network address"},
		{"static ip broadcast", false, func(st map[string]any) {
			doc(st, "web/run.json")["network"].(map[string]any)["ip"] = "10.0.5.255"
		}, "web/run.json: network.ip", "broadcast address"},
		{"static ip gateway", false, func(st map[string]any) {
			doc(st, "web/run.json")["network"].(map[string]any)["ip"] = "10.0.5.1"
		}, "web/run.json: network.ip", "gateway"},
		{"static ip duplicate", false, func(st map[string]any) {
			doc(st, "cli/run.json")["network"].(map[string]any)["ip"] = "10.0.5.10"
		}, "web/run.json: network.ip", "already the static address of container cli"},
		{"static_ip alias outside pool", false, func(st map[string]any) {
			n := doc(st, "web/run.json")["network"].(map[string]any)
			delete(n, "ip")
			n["static_ip"] = "172.16.0.2"
		}, "web/run.json: network.static_ip", "outside pool internal"},
		{"static ip malformed", false, func(st map[string]any) {
			doc(st, "web/run.json")["network"].(map[string]any)["ip"] = "10.0.5"
		}, "web/run.json: network.ip", "IPv4 address"},
		{"static ip without pool", false, func(st map[string]any) {
			doc(st, "web/run.json")["network"] = map[string]any{"mode": "host", "ip": "10.0.5.10"}
		}, "web/run.json: network.ip", "needs a pool"},
		{"host mode with pool", false, func(st map[string]any) {
			doc(st, "cli/run.json")["network"].(map[string]any)["mode"] = "host"
		}, "cli/run.json: network.pool", "host-mode"},
		{"bad network mode", false, func(st map[string]any) {
			doc(st, "cli/run.json")["network"] = map[string]any{"mode": "bridge"}
		}, "cli/run.json: network.mode", "host or pool"},
		{"bad mac", false, func(st map[string]any) {
			doc(st, "web/run.json")["network"].(map[string]any)["mac"] = "02:00:0a"
		}, "web/run.json: network.mac", "MAC address"},
		{"multicast mac", false, func(st map[string]any) {
			doc(st, "web/run.json")["network"].(map[string]any)["mac"] = "01:00:5e:00:00:01"
		}, "web/run.json: network.mac", "multicast"},
		{"duplicate mac", false, func(st map[string]any) {
			doc(st, "cli/run.json")["network"].(map[string]any)["mac"] = "02:00:0a:00:05:0a"
		}, "web/run.json: network.mac", "already the MAC address of container cli"},
		{"static mac equals a derived mac", false, func(st map[string]any) {
			doc(st, "web/run.json")["network"].(map[string]any)["mac"] = "02:00:0a:00:05:0b"
			doc(st, "cli/run.json")["network"].(map[string]any)["ip"] = "10.0.5.11"
		}, "web/run.json: network.mac", "already the MAC address of container cli (derived from its network.ip 10.0.5.11)"},
		{"bad hostname", false, func(st map[string]any) {
			doc(st, "web/run.json")["network"].(map[string]any)["hostname"] = "web_server"
		}, "web/run.json: network.hostname", "not a valid host name"},
		{"ingress collision same address", false, func(st map[string]any) {
			ing := doc(st, "device.json")["ingress"].([]any)
			doc(st, "device.json")["ingress"] = append(ing, map[string]any{"name": "web2", "type": "tcp", "external": ":8080", "provider": "web", "service": "web-http"})
		}, `device.json: ingress[2] ("web2").external`, "collides with ingress[0]"},
		{"ingress collision tcp vs http", false, func(st map[string]any) {
			ing := doc(st, "device.json")["ingress"].([]any)
			doc(st, "device.json")["ingress"] = append(ing, map[string]any{"type": "tcp", "external": "10.1.1.1:80", "provider": "web", "service": "web-http"})
		}, `device.json: ingress[2] ("web-http").external`, "collides with ingress[1]"},
		{"ingress collision same prefix", false, func(st map[string]any) {
			ing := doc(st, "device.json")["ingress"].([]any)
			doc(st, "device.json")["ingress"] = append(ing, map[string]any{"type": "http", "external": "0.0.0.0:80/api", "provider": "web", "service": "web-http"})
		}, `device.json: ingress[2] ("web-http").external`, "collides with ingress[1]"},
		{"ingress collision prefix with trailing slash", false, func(st map[string]any) {
			ing := doc(st, "device.json")["ingress"].([]any)
			doc(st, "device.json")["ingress"] = append(ing, map[string]any{"name": "api2", "type": "http", "external": ":80/api/", "provider": "web", "service": "web-http"})
		}, `device.json: ingress[2] ("api2").external`, "collides with ingress[1]"},
		{"ingress duplicate name", false, func(st map[string]any) {
			ing := doc(st, "device.json")["ingress"].([]any)
			doc(st, "device.json")["ingress"] = append(ing, map[string]any{"name": "web", "type": "tcp", "external": ":9090", "provider": "web", "service": "web-http"})
		}, `device.json: ingress[2] ("web").name`, "duplicate ingress name"},
		{"ingress unknown provider", false, func(st map[string]any) {
			doc(st, "device.json")["ingress"].([]any)[0].(map[string]any)["provider"] = "nginx"
		}, `device.json: ingress[0] ("web").provider`, `unknown container "nginx"`},
		{"ingress service not exported", false, func(st map[string]any) {
			doc(st, "device.json")["ingress"].([]any)[0].(map[string]any)["service"] = "ssh"
		}, `device.json: ingress[0] ("web").service`, `exports no service "ssh"`},
		{"ingress incompatible backend", false, func(st map[string]any) {
			doc(st, "web/services.json")["services"] = append(doc(st, "web/services.json")["services"].([]any), map[string]any{"name": "bus", "type": "dbus", "socket": "/run/dbus.sock"})
			doc(st, "device.json")["ingress"].([]any)[0].(map[string]any)["service"] = "bus"
		}, `device.json: ingress[0] ("web").service`, "cannot forward to web's dbus"},
		{"ingress bad external", false, func(st map[string]any) {
			doc(st, "device.json")["ingress"].([]any)[0].(map[string]any)["external"] = "8080"
		}, `device.json: ingress[0] ("web").external`, "IP:PORT"},
		{"ingress bad port", false, func(st map[string]any) {
			doc(st, "device.json")["ingress"].([]any)[0].(map[string]any)["external"] = ":70000"
		}, `device.json: ingress[0] ("web").external`, "1-65535"},
		{"ingress bad type", false, func(st map[string]any) {
			doc(st, "device.json")["ingress"].([]any)[0].(map[string]any)["type"] = "udp"
		}, `device.json: ingress[0] ("web").type`, "tcp or http"},
		{"required service missing", false, func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{map[string]any{"name": "db", "type": "unix"}}}
		}, `cli/run.json: services.required[0] ("db")`, `required service "db" of type unix is exported by no container`},
		{"required service wrong type", false, func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{map[string]any{"name": "api", "type": "rest"}}}
		}, `cli/run.json: services.required[0] ("api")`, "web exports it as type unix"},
		{"required service unknown provider", false, func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{map[string]any{"name": "api", "type": "unix", "provider": "ghost"}}}
		}, `cli/run.json: services.required[0] ("api").provider`, `unknown container "ghost"`},
		{"required service not exported by provider", false, func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{map[string]any{"name": "db", "provider": "web"}}}
		}, `cli/run.json: services.required[0] ("db")`, `container web exports no service "db"`},
		{"required service bad type", false, func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{map[string]any{"name": "api", "type": "grpc"}}}
		}, `cli/run.json: services.required[0] ("api").type`, "unknown service type"},
		{"tcp link without target", false, func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{map[string]any{"name": "web-http", "type": "tcp"}}}
		}, `cli/run.json: services.required[0] ("web-http").target`, "without a target it would be the socket /tmp/pvx_cli_web-http.sock"},
		{"untyped requirement of a tcp export without target", false, func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{"web-http"}}
		}, `cli/run.json: services.required[0] ("web-http").target`, "a tcp link listens on IP:PORT"},
		{"tcp link target is a path", false, func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{map[string]any{"name": "web-http", "type": "tcp", "target": "/run/web.sock"}}}
		}, `cli/run.json: services.required[0] ("web-http").target`, "want IP:PORT[/prefix]"},
		{"http link target port out of range", false, func(st map[string]any) {
			doc(st, "web/services.json")["services"] = append(doc(st, "web/services.json")["services"].([]any), map[string]any{"name": "site", "type": "http", "port": 8000})
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{map[string]any{"name": "site", "target": ":80000/ui"}}}
		}, `cli/run.json: services.required[0] ("site").target`, "not 1-65535"},
		{"unix link relative target", false, func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{map[string]any{"name": "api", "type": "unix", "target": "run/api.sock"}}}
		}, `cli/run.json: services.required[0] ("api").target`, "absolute path"},
		{"unix link relative interface", false, func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{map[string]any{"name": "api", "interface": "api.sock"}}}
		}, `cli/run.json: services.required[0] ("api").interface`, "absolute path"},
		{"optional tcp link target is a path", false, func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"optional": []any{map[string]any{"name": "web-http", "target": "/run/web.sock"}}}
		}, `cli/run.json: services.optional[0] ("web-http").target`, "want IP:PORT[/prefix]"},
		{"host link listens on an ingress port", false, func(st map[string]any) {
			delete(doc(st, "cli/run.json"), "network") // the device's network
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{map[string]any{"name": "web-http", "type": "tcp", "target": "0.0.0.0:8080"}}}
		}, `cli/run.json: services.required[0] ("web-http").target`, `collides with device.json ingress[0] ("web") (0.0.0.0:8080)`},
		{"host-mode link listens on an http ingress port", false, func(st map[string]any) {
			doc(st, "cli/run.json")["network"] = map[string]any{"mode": "host"}
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{map[string]any{"name": "web-http", "target": "127.0.0.1:80"}}}
		}, `cli/run.json: services.required[0] ("web-http").target`, `collides with device.json ingress[1] ("api")`},
		{"two links of one consumer on one port", false, func(st map[string]any) {
			doc(st, "web/services.json")["services"] = append(doc(st, "web/services.json")["services"].([]any), map[string]any{"name": "db", "type": "tcp", "port": 5432})
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{
				map[string]any{"name": "web-http", "target": ":9000"},
				map[string]any{"name": "db", "target": "127.0.0.1:9000"},
			}}
		}, `cli/run.json: services.required[1] ("db").target`, `collides with cli/run.json: services.required[0] ("web-http").target (:9000) in the network namespace of cli`},
		{"two host consumers on one port", false, func(st map[string]any) {
			delete(doc(st, "cli/run.json"), "network")
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{map[string]any{"name": "web-http", "target": ":9000"}}}
			st["cli2/run.json"] = map[string]any{"name": "cli2", "root-volume": "root.squashfs",
				"services": map[string]any{"required": []any{map[string]any{"name": "web-http", "target": ":9000"}}}}
			st["cli2/root.squashfs"] = sha2
		}, `cli2/run.json: services.required[0] ("web-http").target`, `collides with cli/run.json: services.required[0] ("web-http").target (:9000) in the device's network namespace`},
		{"duplicate requirement", false, func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{
				map[string]any{"name": "api", "type": "unix", "target": "/run/a.sock"},
				map[string]any{"name": "api", "type": "unix", "target": "/run/b.sock"},
			}}
		}, `cli/run.json: services.required[1] ("api").name`, `duplicate requirement of service "api": services.required[0] ("api") has it`},
		{"duplicate optional string requirement", false, func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"optional": []any{"api", map[string]any{"service": "api"}}}
		}, `cli/run.json: services.optional[1] ("api").service`, "duplicate requirement"},
		{"services.json without container", false, func(st map[string]any) {
			st["ghost/services.json"] = []any{map[string]any{"name": "x", "type": "unix", "socket": "/x"}}
		}, "ghost/services.json", "no container"},
		{"export bad type", false, func(st map[string]any) {
			doc(st, "web/services.json")["services"].([]any)[1].(map[string]any)["type"] = "grpc"
		}, `web/services.json: services[1] ("api").type`, "unknown service type"},
		{"export relative socket", false, func(st map[string]any) {
			doc(st, "web/services.json")["services"].([]any)[1].(map[string]any)["socket"] = "run/api.sock"
		}, `web/services.json: services[1] ("api").socket`, "absolute path"},
		{"export bad port", false, func(st map[string]any) {
			doc(st, "web/services.json")["services"].([]any)[0].(map[string]any)["port"] = 65536
		}, `web/services.json: services[0] ("web-http").port`, "0-65535"},
		{"export tcp without port", false, func(st map[string]any) {
			delete(doc(st, "web/services.json")["services"].([]any)[0].(map[string]any), "port")
		}, `web/services.json: services[0] ("web-http").port`, "needs a port or a socket"},
		{"export unix without socket", false, func(st map[string]any) {
			delete(doc(st, "web/services.json")["services"].([]any)[1].(map[string]any), "socket")
		}, `web/services.json: services[1] ("api").socket`, "needs a socket"},
		{"export tcp port zero", false, func(st map[string]any) {
			doc(st, "web/services.json")["services"].([]any)[0].(map[string]any)["port"] = 0
		}, `web/services.json: services[0] ("web-http").port`, "0 reaches nothing"},
		{"export drm by port", false, func(st map[string]any) {
			doc(st, "web/services.json")["services"] = append(doc(st, "web/services.json")["services"].([]any), map[string]any{"name": "gpu", "type": "drm", "port": 9000})
		}, `web/services.json: services[2] ("gpu").socket`, "reached by its socket path"},
		{"export dbus without socket", false, func(st map[string]any) {
			doc(st, "web/services.json")["services"] = append(doc(st, "web/services.json")["services"].([]any), map[string]any{"name": "bus", "type": "dbus"})
		}, `web/services.json: services[2] ("bus").socket`, "reached by its socket path"},
		{"export duplicate", false, func(st map[string]any) {
			doc(st, "web/services.json")["services"] = append(doc(st, "web/services.json")["services"].([]any), map[string]any{"name": "web-http", "type": "tcp", "port": 81})
		}, `web/services.json: services[2] ("web-http").name`, "duplicate service"},
		{"bsp missing in embedded mode", false, func(st map[string]any) { delete(st, "bsp/run.json") }, "bsp/run.json", "missing"},
		{"bsp asset missing", false, func(st map[string]any) { delete(st, "bsp/kernel.img") }, "bsp/run.json: linux", "no bsp/kernel.img"},
		{"bsp addon missing", false, func(st map[string]any) { doc(st, "bsp/run.json")["addons"] = []any{"plymouth.cpio"} }, "bsp/run.json: addons[0]", "no bsp/plymouth.cpio"},
		{"bsp without kernel", false, func(st map[string]any) { delete(doc(st, "bsp/run.json"), "initrd") }, "bsp/run.json", "needs linux and initrd"},
		{"required driver unknown", false, func(st map[string]any) {
			doc(st, "web/run.json")["drivers"].(map[string]any)["required"] = []any{"gpu"}
		}, "web/run.json: drivers.required[0]", `unknown driver alias "gpu"`},
		{"storage bad persistence", false, func(st map[string]any) {
			doc(st, "web/run.json")["storage"].(map[string]any)["lxc-overlay"].(map[string]any)["persistence"] = "forever"
		}, "web/run.json: storage.lxc-overlay.persistence", "permanent, revision or boot"},
		{"storage name climbs out", false, func(st map[string]any) {
			doc(st, "web/run.json")["storage"].(map[string]any)["../../../../../tmp/x"] = map[string]any{"persistence": "boot"}
		}, "web/run.json: storage.../../../../../tmp/x", "contains a slash"},
		{"storage name dot-dot", false, func(st map[string]any) {
			doc(st, "web/run.json")["storage"].(map[string]any)[".."] = map[string]any{"persistence": "boot"}
		}, "web/run.json: storage...", "dot segment"},
		{"storage name longer than a file name", false, func(st map[string]any) {
			doc(st, "web/run.json")["storage"].(map[string]any)[strings.Repeat("s", 256)] = map[string]any{"persistence": "permanent"}
		}, "web/run.json: storage." + strings.Repeat("s", 256), "is 256 bytes, longer than a file name (255)"},
		{"storage name empty", false, func(st map[string]any) {
			doc(st, "web/run.json")["storage"].(map[string]any)[""] = map[string]any{"persistence": "boot"}
		}, "web/run.json: storage.", "is empty"},
		{"volume name with slash", false, func(st map[string]any) {
			doc(st, "device.json")["volumes"].(map[string]any)["a/b"] = map[string]any{"persistence": "permanent"}
		}, "device.json: volumes.a/b", "contains a slash"},
		{"disk name dot", false, func(st map[string]any) {
			doc(st, "device.json")["disks"].([]any)[0].(map[string]any)["name"] = "."
			doc(st, "device.json")["volumes"].(map[string]any)["pv--devmeta"].(map[string]any)["disk"] = "."
		}, `device.json: disks[0] (".").name`, "dot segment"},
		{"storage unknown disk", false, func(st map[string]any) {
			doc(st, "web/run.json")["storage"].(map[string]any)["lxc-overlay"].(map[string]any)["disk"] = "sdcard"
		}, "web/run.json: storage.lxc-overlay.disk", `unknown disk "sdcard"`},
		{"volume unknown disk", false, func(st map[string]any) {
			doc(st, "device.json")["volumes"].(map[string]any)["pv--devmeta"].(map[string]any)["disk"] = "sdcard"
		}, "device.json: volumes.pv--devmeta.disk", `unknown disk "sdcard"`},
		{"disk bad type", false, func(st map[string]any) {
			doc(st, "device.json")["disks"].([]any)[0].(map[string]any)["type"] = "nfs"
		}, `device.json: disks[0] ("internal").type`, `unknown disk type "nfs"`},
		{"volume-disk without format", false, func(st map[string]any) {
			doc(st, "device.json")["disks"].([]any)[0].(map[string]any)["type"] = "volume-disk"
		}, `device.json: disks[0] ("internal").format`, "required for a volume-disk"},
		{"two default disks", false, func(st map[string]any) {
			d := doc(st, "device.json")
			d["disks"] = append(d["disks"].([]any), map[string]any{"name": "other", "type": "directory", "default": "yes"})
		}, `device.json: disks[1] ("other").default`, "more than one"},
		{"roles not strings", false, func(st map[string]any) { doc(st, "web/run.json")["roles"] = []any{1} }, "web/run.json: roles[0]", "must be a string"},
		{"appengine still checks containers", true, func(st map[string]any) { doc(st, "web/run.json")["group"] = "nope" }, "web/run.json: group", "unknown group"},
		{"legacy groups.json bad goal", true, func(st map[string]any) {
			delete(st, "device.json")
			delete(doc(st, "web/run.json"), "network")
			delete(doc(st, "cli/run.json"), "network")
			st["groups.json"] = []any{map[string]any{"name": "app", "status_goal": "DONE"}}
		}, `groups.json: [0] ("app").status_goal`, "MOUNTED, STARTED or READY"},
		{"runlevel unknown", true, func(st map[string]any) {
			delete(st, "device.json")
			delete(doc(st, "web/run.json"), "network")
			delete(doc(st, "web/run.json"), "group")
			delete(doc(st, "cli/run.json"), "network")
			doc(st, "web/run.json")["runlevel"] = "boot"
		}, "web/run.json: runlevel", "unknown runlevel"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := baseState()
			tc.mutate(st)
			_, err := Parse(encode(t, st), Options{AppEngine: tc.appengine})
			probs := Problems(err)
			if len(probs) == 0 {
				t.Fatalf("no error, want %q", tc.where)
			}
			if len(probs) != 1 {
				t.Errorf("want exactly one error, got %d:\n%v", len(probs), err)
			}
			if probs[0].Where() != tc.where {
				t.Errorf("error at %q, want %q (%s)", probs[0].Where(), tc.where, probs[0])
			}
			if !strings.Contains(probs[0].Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", probs[0].Msg, tc.msg)
			}
		})
	}
}

// An optional requirement of a service the container requires already
// makes no link of its own (xconnect.Graph keeps the required one): it is
// ignored with a warning, and its target is not checked.
func TestOptionalRepeatingRequiredIsIgnored(t *testing.T) {
	st := baseState()
	doc(st, "cli/run.json")["services"] = map[string]any{
		"required": []any{map[string]any{"name": "api", "type": "unix", "target": "/run/api.sock"}},
		"optional": []any{map[string]any{"name": "api", "target": "relative.sock"}},
	}
	s, err := Parse(encode(t, st), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := `cli/run.json: services.optional[0] ("api").name`
	if len(s.Warnings) != 1 || s.Warnings[0].Where() != want || !strings.Contains(s.Warnings[0].Msg, "services.required lists") {
		t.Errorf("warnings %v, want one at %s", s.Warnings, want)
	}
}

// A tcp link listens in its consumer's network namespace: a consumer in a
// pool has its own, so its link may take a port the device's ingress
// listens on, and two such consumers may take the same port.
func TestPoolConsumersListenInTheirOwnNamespace(t *testing.T) {
	st := baseState()
	doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{map[string]any{"name": "web-http", "target": ":8080"}}}
	st["cli2/run.json"] = map[string]any{"name": "cli2", "root-volume": "root.squashfs", "network": map[string]any{"pool": "internal"},
		"services": map[string]any{"required": []any{map[string]any{"name": "web-http", "target": ":8080"}}}}
	st["cli2/root.squashfs"] = sha2
	if _, err := Parse(encode(t, st), Options{}); err != nil {
		t.Fatal(err)
	}
}

func TestSeveralFaultsAllReported(t *testing.T) {
	st := baseState()
	doc(st, "web/run.json")["auto_recovery"].(map[string]any)["max_retries"] = -1
	doc(st, "web/run.json")["network"].(map[string]any)["ip"] = "10.0.5.255"
	doc(st, "cli/run.json")["group"] = "nope"
	doc(st, "device.json")["groups"].([]any)[0].(map[string]any)["status_goal"] = "X"
	delete(st, "bsp/kernel.img")
	doc(st, "device.json")["ingress"].([]any)[1].(map[string]any)["provider"] = "ghost"
	_, err := Parse(encode(t, st), Options{})
	want := []string{
		"bsp/run.json: linux",
		"cli/run.json: group",
		`device.json: groups[0] ("root").status_goal`,
		`device.json: ingress[1] ("api").provider`,
		"web/run.json: auto_recovery.max_retries",
		"web/run.json: network.ip",
	}
	probs := Problems(err)
	var got []string
	for _, p := range probs {
		got = append(got, p.Where())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(err.Error(), "6 errors") {
		t.Errorf("error text does not count the errors: %v", err)
	}
}

func TestNotJSON(t *testing.T) {
	for _, in := range []string{``, `[]`, `{"#spec":`, `{"a":1} x`, `"str"`, `{"#spec":"pantavisor-service-system@1","#spec":"x"}`} {
		_, err := Parse([]byte(in), Options{AppEngine: true})
		if len(Problems(err)) == 0 {
			t.Errorf("%q: no error", in)
		}
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

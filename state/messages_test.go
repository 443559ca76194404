package state

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMessagesNameTheItem: every problem inside an array names the element
// by its name next to its index, in the one format of itemPath, and states
// the whole message; the exact text is what a person reads.
func TestMessagesNameTheItem(t *testing.T) {
	groups := func(st map[string]any) []any { return doc(st, "device.json")["groups"].([]any) }
	group := func(st map[string]any, i int) map[string]any { return groups(st)[i].(map[string]any) }
	ingress := func(st map[string]any, i int) map[string]any {
		return doc(st, "device.json")["ingress"].([]any)[i].(map[string]any)
	}
	exports := func(st map[string]any) map[string]any { return doc(st, "web/services.json") }
	tests := []struct {
		name   string
		mutate func(st map[string]any)
		want   string // the only error, as Problem.String renders it
	}{
		{"group timeout", func(st map[string]any) { group(st, 1)["timeout"] = -1 },
			`device.json: groups[1] ("app").timeout: must be >= 0, got -1`},
		{"group goal", func(st map[string]any) { group(st, 0)["status_goal"] = "UP" },
			`device.json: groups[0] ("root").status_goal: must be MOUNTED, STARTED or READY, got "UP"`},
		{"group duplicate", func(st map[string]any) {
			doc(st, "device.json")["groups"] = append(groups(st), map[string]any{"name": "app"})
		}, `device.json: groups[2] ("app").name: duplicate group "app"`},
		{"group without a name keeps the index", func(st map[string]any) {
			doc(st, "device.json")["groups"] = append(groups(st), map[string]any{"timeout": 3})
		}, `device.json: groups[2].name: missing: every group needs a name`},
		{"group not an object", func(st map[string]any) {
			doc(st, "device.json")["groups"] = append(groups(st), "app2")
		}, `device.json: groups[2]: must be a JSON object, got a string`},
		{"group name too long is cut", func(st map[string]any) {
			group(st, 1)["timeout"] = "x"
			group(st, 1)["name"] = strings.Repeat("a", 50)
			st["cli/run.json"].(map[string]any)["group"] = strings.Repeat("a", 50)
			st["web/run.json"].(map[string]any)["group"] = strings.Repeat("a", 50)
		}, `device.json: groups[1] ("` + strings.Repeat("a", 40) + `...").timeout: must be an integer, got "x"`},
		{"disk type", func(st map[string]any) {
			doc(st, "device.json")["disks"].([]any)[0].(map[string]any)["type"] = "nfs"
		}, `device.json: disks[0] ("internal").type: unknown disk type "nfs"`},
		{"disk duplicate", func(st map[string]any) {
			d := doc(st, "device.json")
			d["disks"] = append(d["disks"].([]any), map[string]any{"name": "internal", "type": "directory"})
		}, `device.json: disks[1] ("internal").name: duplicate disk "internal"`},
		{"disks_v2 named after its own list", func(st map[string]any) {
			doc(st, "device.json")["disks_v2"] = []any{7, map[string]any{"name": "internal", "type": "directory", "default": "yes"}}
		}, `device.json: disks_v2[0]: must be a JSON object, got a number
device.json: disks_v2[1] ("internal").default: more than one disk is the default
device.json: disks_v2[1] ("internal").name: duplicate disk "internal"`},
		{"ingress provider", func(st map[string]any) { ingress(st, 1)["provider"] = "ghost" },
			`device.json: ingress[1] ("api").provider: unknown container "ghost"`},
		{"ingress without a name is named by its service", func(st map[string]any) {
			delete(ingress(st, 1), "name")
			ingress(st, 1)["provider"] = "ghost"
		}, `device.json: ingress[1] ("web-http").provider: unknown container "ghost"`},
		{"ingress collision names the other rule", func(st map[string]any) { ingress(st, 1)["external"] = "0.0.0.0:8080" },
			`device.json: ingress[1] ("api").external: 0.0.0.0:8080 collides with ingress[0] ("web") (0.0.0.0:8080)`},
		{"ingress duplicate names the other rule", func(st map[string]any) { ingress(st, 1)["name"] = "web"; ingress(st, 1)["external"] = ":81" },
			`device.json: ingress[1] ("web").name: duplicate ingress name "web": ingress[0] ("web") has it too`},
		{"export type", func(st map[string]any) {
			exports(st)["services"].([]any)[1].(map[string]any)["type"] = "grpc"
			delete(doc(st, "cli/run.json"), "services")
		}, `web/services.json: services[1] ("api").type: unknown service type "grpc": rest, dbus, unix, drm, wayland, tcp or http`},
		{"export port", func(st map[string]any) { exports(st)["services"].([]any)[0].(map[string]any)["port"] = 70000 },
			`web/services.json: services[0] ("web-http").port: must be 0-65535, got 70000`},
		{"bare-array export", func(st map[string]any) {
			st["web/services.json"] = []any{map[string]any{"name": "web-http", "type": "tcp", "port": 80}, map[string]any{"name": "api", "type": "unix", "socket": "run/api.sock"}}
		}, `web/services.json: [1] ("api").socket: must be an absolute path inside the provider, got "run/api.sock"`},
		{"required service not exported", func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{map[string]any{"name": "db", "type": "tcp"}}}
		}, `cli/run.json: services.required[0] ("db"): required service "db" of type tcp is exported by no container`},
		{"required service as a string", func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{"api", "db"}}
		}, `cli/run.json: services.required[1] ("db"): required service "db" is exported by no container`},
		{"required service after a non-object keeps its index", func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"required": []any{3, map[string]any{"service": "db", "provider": "web"}}}
		}, `cli/run.json: services.required[0]: must be a JSON object, got a number
cli/run.json: services.required[1] ("db"): container web exports no service "db"`},
		{"optional service provider", func(st map[string]any) {
			doc(st, "cli/run.json")["services"] = map[string]any{"optional": []any{map[string]any{"name": "x", "provider": "ghost"}}}
		}, `cli/run.json: services.optional[0] ("x").provider: unknown container "ghost"`},
		{"pool is named by its key", func(st map[string]any) {
			doc(st, "device.json")["network"].(map[string]any)["pools"].(map[string]any)["lan"].(map[string]any)["gateway"] = "10.9.9.9"
		}, `device.json: network.pools.lan.gateway: 10.9.9.9 is outside the pool's subnet 192.168.7.0/24`},
		{"storage is named by its key", func(st map[string]any) {
			doc(st, "web/run.json")["storage"].(map[string]any)["lxc-overlay"].(map[string]any)["disk"] = "nvme"
		}, `web/run.json: storage.lxc-overlay.disk: unknown disk "nvme"`},
		{"string list names the value", func(st map[string]any) {
			doc(st, "web/run.json")["drivers"].(map[string]any)["required"] = []any{"wifi", "gpu"}
		}, `web/run.json: drivers.required[1]: unknown driver alias "gpu": bsp/drivers.json does not define it`},
		{"volume names the value", func(st map[string]any) { doc(st, "web/run.json")["volumes"] = []any{"data.squashfs"} },
			`web/run.json: volumes[0]: names "data.squashfs" but the state has no web/data.squashfs`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := baseState()
			tt.mutate(st)
			_, err := Parse(encode(t, st), Options{})
			var got []string
			for _, p := range Problems(err) {
				got = append(got, p.String())
			}
			if g := strings.Join(got, "\n"); g != tt.want {
				t.Errorf("errors:\n%s\nwant:\n%s", g, tt.want)
			}
		})
	}
}

// TestPvrTemplateKeysAreKnown: a run.json with every key upstream pvr's
// builtin LXC template writes (templates/builtin-lxc-docker.go, RUN_JSON),
// plus services.manual beside required and optional, parses without a
// warning about an unknown key.
func TestPvrTemplateKeysAreKnown(t *testing.T) {
	st := baseState()
	doc(st, "device.json")["groups"] = append(doc(st, "device.json")["groups"].([]any), map[string]any{"name": "platform"})
	st["pvr/run.json"] = map[string]any{
		"#spec":          "service-manifest-run@1",
		"name":           "pvr",
		"config":         "lxc.container.conf",
		"conditions":     []any{map[string]any{"container": "web", "key": "status", "value": "ready"}},
		"drivers":        map[string]any{"manual": []any{}, "required": []any{}, "optional": []any{}},
		"group":          "platform",
		"restart_policy": "system",
		"status_goal":    "READY",
		"storage": map[string]any{
			"docker--etc-dropbear": map[string]any{"persistence": "permanent"},
			"docker--var-pv":       map[string]any{"persistence": "permanent", "disk": "internal"},
			"lxc-overlay":          map[string]any{"persistence": "boot"},
		},
		"exports":     []any{"/var/log"},
		"logs":        []any{map[string]any{"file": "/var/log/app.log", "maxsize": "1024"}},
		"type":        "lxc",
		"roles":       []any{"mgmt"},
		"root-volume": "dm:root.squashfs",
		"volumes":     []any{"extra.squashfs"},
		"services": map[string]any{
			"required": []any{map[string]any{"name": "api", "type": "unix", "target": "/run/api.sock"}},
			"optional": []any{},
			"manual":   []any{map[string]any{"name": "web-http", "type": "tcp"}},
		},
	}
	st["pvr/lxc.container.conf"] = sha1
	st["pvr/root.squashfs"] = sha2
	st["pvr/extra.squashfs"] = sha2
	parsed, err := Parse(encode(t, st), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range parsed.Warnings {
		t.Errorf("warning: %s", w)
	}
	// runlevel is known but deprecated: its warning says so, not "unknown key".
	run := doc(st, "pvr/run.json")
	delete(run, "group")
	run["runlevel"] = "platform"
	if parsed, err = Parse(encode(t, st), Options{}); err != nil {
		t.Fatal(err)
	}
	for _, w := range parsed.Warnings {
		if strings.Contains(w.Msg, "unknown key") {
			t.Errorf("warning: %s", w)
		}
	}
}

// pvr's template writes "built-in" for a storage entry without a
// persistence: upstream warns and keeps the layer for the boot only.
func TestPvrBuiltinPersistenceIsBoot(t *testing.T) {
	st := baseState()
	st["pvr/run.json"] = map[string]any{
		"#spec": "service-manifest-run@1", "name": "pvr", "type": "lxc", "config": "lxc.container.conf",
		"root-volume": "root.squashfs",
		"storage":     map[string]any{"lxc-overlay": map[string]any{"persistence": "built-in"}},
	}
	st["pvr/lxc.container.conf"] = sha1
	st["pvr/root.squashfs"] = sha2
	parsed, err := Parse(encode(t, st), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := parsed.Container("pvr").Storage["lxc-overlay"].Persistence; got != PersistBoot {
		t.Errorf("persistence %q, want boot", got)
	}
	if len(parsed.Warnings) != 1 || !strings.Contains(parsed.Warnings[0].String(), `"built-in" is pvr's placeholder: treated as boot`) {
		t.Errorf("warnings %v", parsed.Warnings)
	}
}

// TestFixturesHaveNoUnknownKeys: the real upstream states use only keys
// upstream writes; none of them may be reported as unknown, in either mode.
func TestFixturesHaveNoUnknownKeys(t *testing.T) {
	for _, f := range fixtureFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, opt := range []Options{{AppEngine: true}, {}} {
			st, _ := Parse(data, opt) // embedded mode refuses the fragments without a BSP; their keys still count
			for _, w := range st.Warnings {
				if strings.Contains(w.Msg, "unknown") {
					t.Errorf("%s (appengine=%v): %s", filepath.Base(f), opt.AppEngine, w)
				}
			}
		}
	}
}

// A container's name is its runtime id: characters the runtime refuses
// are an error at validation, not a start that fails on the device.
func TestContainerNameMustSuitTheRuntime(t *testing.T) {
	for _, name := range []string{"pool:lan", "a b", "...", "é"} {
		st := baseState()
		st[name+"/run.json"] = map[string]any{"name": name, "type": "lxc"}
		_, err := Parse(encode(t, st), Options{})
		want := fmt.Sprintf("%q cannot name a container", name)
		found := false
		for _, p := range Problems(err) {
			found = found || strings.Contains(p.String(), want)
		}
		if !found {
			t.Errorf("%q: %v", name, err)
		}
	}
	for _, name := range []string{"web_2", "a.b+c-d"} {
		if validContainerName(name) != true {
			t.Errorf("%q refused", name)
		}
	}
}

//go:build integration

package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/storage"
)

// requireIsolatedNet refuses to touch the network unless this test process
// has a network namespace of its own: lo and the links earlier tests of
// this binary made (all named t...). The host's is never touched.
func requireIsolatedNet(t *testing.T) {
	t.Helper()
	isolated.RequireNet(t, "t")
}

// linkToDevice connects this test's network namespace to the device's with
// a veth pair: hostName (with hostAddr, if any) stays here, peerName (with
// peerAddr, if any) goes into the namespace of the device's PID 1.
func linkToDevice(t *testing.T, pid1 int, hostName, peerName, hostAddr, peerAddr string) {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName}, PeerName: peerName}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	ns, err := netns.GetFromPath(fmt.Sprintf("/proc/%d/ns/net", pid1))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	peer, err := netlink.LinkByName(peerName)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(peer, int(ns)); err != nil {
		t.Fatalf("move %s into the device: %v", peerName, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	configure := func(h *netlink.Handle, name, addr string) {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if addr != "" {
			a, err := netlink.ParseAddr(addr)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.AddrAdd(l, a); err != nil {
				t.Fatalf("address %s: %v", name, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	configure(h, peerName, peerAddr)
	here, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer here.Close()
	configure(here, hostName, hostAddr)
}

// wanServer answers HTTP on addr in this namespace and records the source
// address of every request: the "WAN" as a container behind NAT sees it.
type wanServer struct {
	mu      sync.Mutex
	sources []string
}

func startWAN(t *testing.T, addr string) *wanServer {
	t.Helper()
	w := &wanServer{}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		w.mu.Lock()
		w.sources = append(w.sources, host)
		w.mu.Unlock()
		fmt.Fprintf(rw, "wan saw %s\n", host)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return w
}

func (w *wanServer) seen() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.sources...)
}

// Shell loops run inside the containers (pvapp get: busybox's static wget
// crashes resolving even a numeric address without the libc's NSS modules).
const (
	lanClient = `/bin/sh "-c" "until pvapp get http://10.0.5.10:8080/ > /tmp/lan 2>/dev/null; do sleep 0.3; done; echo LAN-OK $(cat /tmp/lan); until pvapp get http://10.88.0.1:9999/ > /tmp/wan 2>/dev/null; do sleep 0.3; done; echo WAN-OK $(cat /tmp/wan); ip addr show eth0; ` + idle + `"`
	isoClient = `/bin/sh "-c" "sleep 1; n=0; while [ $n -lt 4 ]; do if pvapp get http://10.0.5.10:8080/ >/dev/null 2>&1; then echo ISO-OPEN; ` + idle + `; fi; n=$((n+1)); done; echo ISO-BLOCKED; ` + idle + `"`
	crashy    = `/bin/sh "-c" "ip -4 addr show eth0 | grep inet; exit 1"`
)

func pooledGroups() []map[string]any {
	return []map[string]any{{"name": "app"}}
}

func poolsDevice(t *testing.T, extra ...ctr) string {
	return poolsDeviceWith(t, lanClient, extra...)
}

// poolsDeviceWith is poolsDevice with cli's init command.
func poolsDeviceWith(t *testing.T, cliCmd string, extra ...ctr) string {
	always := map[string]any{"policy": "always", "retry_delay": 0}
	ctrs := append([]ctr{
		{name: "srv", group: "app", cmd: `/bin/pvapp "web" "-addr" ":8080"`, run: map[string]any{
			"network": map[string]any{"pool": "lan", "hostname": "srv", "ip": "10.0.5.10", "mac": "02:00:00:00:05:10"}, "auto_recovery": always}},
		{name: "cli", group: "app", cmd: cliCmd, run: map[string]any{"network": map[string]any{"pool": "lan"}}},
		{name: "other", group: "app", cmd: isoClient, run: map[string]any{"network": map[string]any{"pool": "iso"}}},
	}, extra...)
	storage := buildStorage(t, pooledGroups(), ctrs)
	// The pools go into device.json.
	addDeviceJSON(t, storage, `    "network": {"pools": {
      "lan":  {"type": "bridge", "bridge": "pvbr0", "subnet": "10.0.5.0/24", "gateway": "10.0.5.1", "nat": true},
      "iso":  {"type": "bridge", "bridge": "pvbr1", "subnet": "10.0.6.0/24", "gateway": "10.0.6.1"},
      "tiny": {"type": "bridge", "bridge": "pvbr2", "subnet": "10.0.7.0/29", "gateway": "10.0.7.1"}
    }},`)
	return storage
}

// Two containers in one pool talk over TCP; a container reaches a WAN
// address served from the test's namespace, which sees the NATed source;
// pools are isolated from each other; static ip and mac are honoured and
// kept across restarts, dynamic leases too; many crash/restart cycles in a
// /29 never exhaust it.
func TestPoolNetworking(t *testing.T) {
	requireIsolatedNet(t)
	var crashers []ctr
	for i := 0; i < 3; i++ {
		crashers = append(crashers, ctr{name: fmt.Sprintf("crash%d", i), group: "app", cmd: crashy, run: map[string]any{
			"network":       map[string]any{"pool": "tiny"},
			"auto_recovery": map[string]any{"policy": "always", "retry_delay": 0, "max_retries": 40}}})
	}
	hostNet := ctr{name: "hostnet", group: "app", cmd: `/bin/sh "-c" "n=0; until ip link show pvbr0 >/dev/null 2>&1 || [ $n -gt 50 ]; do n=$((n+1)); sleep 0.2; done; ip link show pvbr0 >/dev/null 2>&1 && echo SEES-HOST-NET; ` + idle + `"`,
		run: map[string]any{"network": map[string]any{"mode": "host"}}}
	d := startDevice(t, poolsDevice(t, append(crashers, hostNet)...))
	pid1 := nsInit(t, d)
	linkToDevice(t, pid1, "twan0", "wan0", "10.88.0.1/24", "10.88.0.2/24")
	wan := startWAN(t, "10.88.0.1:9999")

	d.waitConsole("cli", "LAN-OK", 30*time.Second)
	d.waitConsole("cli", "WAN-OK", 30*time.Second)
	if c := d.console("cli"); !strings.Contains(c, "hello from srv") {
		t.Errorf("cli did not get srv's page: %s", c)
	}
	if src := wan.seen(); len(src) == 0 || src[0] != "10.88.0.2" {
		t.Errorf("WAN saw %v, want the NATed 10.88.0.2", src)
	}
	d.waitConsole("other", "ISO-", 30*time.Second)
	if c := d.console("other"); !strings.Contains(c, "ISO-BLOCKED") {
		t.Errorf("a container of pool iso reached pool lan: %s", c)
	}
	// network.mode host shares the device's network namespace: the pools'
	// bridges are visible from inside.
	d.waitConsole("hostnet", "SEES-HOST-NET", 20*time.Second)

	m := d.waitContainers("crashers gave up", 60*time.Second, statusIs(messages.StatusFailed, "crash0", "crash1", "crash2"))
	if c := m["srv"]; c.IPv4Address != "10.0.5.10/24" || c.MACAddress != "02:00:00:00:05:10" || c.Pool != "lan" {
		t.Errorf("srv: %q %q %q", c.IPv4Address, c.MACAddress, c.Pool)
	}
	if c := m["cli"]; c.IPv4Address != "10.0.5.2/24" || c.MACAddress != "02:00:0a:00:05:02" {
		t.Errorf("cli: %q %q", c.IPv4Address, c.MACAddress)
	}
	if c := d.console("cli"); !strings.Contains(c, "10.0.5.2/24") || !strings.Contains(strings.ToLower(c), "02:00:0a:00:05:02") {
		t.Errorf("cli's eth0 inside the container: %s", c)
	}
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("crash%d", i)
		lines := strings.Split(strings.TrimSpace(d.console(name)), "\n")
		if len(lines) != 41 {
			t.Errorf("%s ran %d times, want 1 + 40 retries", name, len(lines))
		}
		for _, l := range lines {
			if strings.TrimSpace(l) != strings.TrimSpace(lines[0]) {
				t.Errorf("%s changed address across restarts: %q vs %q", name, l, lines[0])
				break
			}
		}
		if m[name].Error != "" && strings.Contains(m[name].Error, "exhausted") {
			t.Errorf("%s: %s", name, m[name].Error)
		}
	}

	// A restart keeps the static address.
	if err := syscall.Kill(hostPid(t, pid1, m["srv"].Pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m = d.waitContainers("srv restarted", 20*time.Second, func(m map[string]messages.ContainerInfo) bool {
		return m["srv"].Status == messages.StatusStarted && m["srv"].AutoRecovery.CurrentRetries == 1
	})
	if m["srv"].IPv4Address != "10.0.5.10/24" {
		t.Errorf("srv after restart: %q", m["srv"].IPv4Address)
	}
	if strings.Contains(d.log(), "pool teardown") {
		t.Errorf("pool errors in the log:\n%s", d.log())
	}
}

// With isolation off (PV_NET_ISOLATION=0) pools reach each other; this run
// also uses the legacy iptables backend (PV_NET_IPTABLES=legacy) for NAT.
func TestPoolIsolationOffLegacyIptables(t *testing.T) {
	requireIsolatedNet(t)
	conf := filepath.Join(t.TempDir(), "pantavisor.config")
	if err := os.WriteFile(conf, []byte("PV_NET_ISOLATION=0\nPV_NET_IPTABLES=legacy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDeviceArgs(t, poolsDevice(t), "--config", conf)
	pid1 := nsInit(t, d)
	linkToDevice(t, pid1, "twan1", "wan0", "10.88.0.1/24", "10.88.0.2/24")
	wan := startWAN(t, "10.88.0.1:9999")
	d.waitConsole("other", "ISO-", 30*time.Second)
	if c := d.console("other"); !strings.Contains(c, "ISO-OPEN") {
		t.Errorf("isolation off, yet pool iso cannot reach pool lan: %s", c)
	}
	d.waitConsole("cli", "WAN-OK", 30*time.Second)
	if src := wan.seen(); len(src) == 0 || src[0] != "10.88.0.2" {
		t.Errorf("WAN saw %v, want the NATed 10.88.0.2 (legacy backend)", src)
	}
	if !strings.Contains(d.log(), "legacy") {
		t.Errorf("legacy backend not reported in the log")
	}
}

// A macvlan pool puts the container on its parent's segment: the test, on
// the other side of the parent link, reaches the container's server at its
// static address. The parent appears after boot: the first starts fail
// with a clear error and auto-recovery brings the container up.
func TestMacvlanPool(t *testing.T) {
	requireIsolatedNet(t)
	storage := buildStorage(t, pooledGroups(), []ctr{
		{name: "m", group: "app", cmd: `/bin/pvapp "web" "-addr" ":8080"`, run: map[string]any{
			"network":       map[string]any{"pool": "seg", "ip": "192.168.7.20"},
			"auto_recovery": map[string]any{"policy": "always", "retry_delay": 1}}},
	})
	addDeviceJSON(t, storage, `    "network": {"pools": {"seg": {"type": "macvlan", "parent": "mvpar", "subnet": "192.168.7.0/24", "gateway": "192.168.7.1"}}},`)
	d := startDevice(t, storage)
	d.waitContainers("start refused without the parent", 20*time.Second, func(m map[string]messages.ContainerInfo) bool {
		return strings.Contains(m["m"].Error, "mvpar")
	})
	pid1 := nsInit(t, d)
	linkToDevice(t, pid1, "tseg0", "mvpar", "192.168.7.1/24", "")
	m := d.waitContainers("m up on the segment", 30*time.Second, statusIs(messages.StatusStarted, "m"))
	if m["m"].IPv4Address != "192.168.7.20/24" {
		t.Errorf("m: %q", m["m"].IPv4Address)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	var body string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://192.168.7.20:8080/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(body, "hello from") {
		t.Errorf("the container is not reachable on the segment: %q", body)
	}
	if a, err := netip.ParseAddr("192.168.7.20"); err != nil || !a.IsPrivate() {
		t.Fatal("bad test address")
	}
}

// lanProbe is a client of pool lan that prints word once it reached srv.
func lanProbe(word string) string {
	return `/bin/sh "-c" "until pvapp get http://10.0.5.10:8080/ > /tmp/lan 2>/dev/null; do sleep 0.3; done; echo ` + word + `; ip -4 addr show eth0 | grep inet; ` + idle + `"`
}

// A non-reboot update of one pooled container keeps the pools as they
// are (no second setup, no teardown) and the unchanged containers with
// their pids and addresses; the swapped container gets its address back
// (leases are sticky by name) and reaches the kept server.
func TestNonRebootUpdateKeepsPoolNetworking(t *testing.T) {
	requireIsolatedNet(t)
	d := startDeviceEnv(t, poolsDeviceWith(t, lanProbe("LAN-V1")), commitDelay)
	d.waitConsole("cli", "LAN-V1", 30*time.Second)
	before := d.waitContainers("all up", 30*time.Second, statusIs(messages.StatusStarted, "srv", "cli", "other"))

	d.upload(poolsDeviceWith(t, lanProbe("LAN-V2")), "v2")
	if out, code := d.pvcontrol("cmd", "run", "locals/v2"); code != 0 {
		t.Fatalf("cmd run: %d %s", code, out)
	}
	if p, seen := d.waitProgress("locals/v2", 60*time.Second); p.Status != storage.StatusUpdated {
		t.Fatalf("final progress %+v (seen %v)", p, seen)
	}
	d.waitConsole("cli", "LAN-V2", 30*time.Second)
	after := d.waitContainers("all up", 10*time.Second, statusIs(messages.StatusStarted, "srv", "cli", "other"))
	for _, name := range []string{"srv", "other"} {
		if after[name].Pid != before[name].Pid || after[name].IPv4Address != before[name].IPv4Address {
			t.Errorf("%s changed: %+v → %+v", name, before[name], after[name])
		}
	}
	if after["cli"].Pid == before["cli"].Pid || after["cli"].IPv4Address != before["cli"].IPv4Address {
		t.Errorf("cli: %s %d → %s %d", before["cli"].IPv4Address, before["cli"].Pid, after["cli"].IPv4Address, after["cli"].Pid)
	}
	log := d.log()
	if n := strings.Count(log, "pool ready"); n != 3 {
		t.Errorf("pools set up %d times, want 3 (once each)", n)
	}
	if n := strings.Count(log, "pool re-adopted"); n != 3 {
		t.Errorf("the next revision adopted %d pools, want 3", n)
	}
	if strings.Contains(log, "pool teardown") {
		t.Errorf("pool errors in the log:\n%s", log)
	}
}

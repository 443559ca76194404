//go:build integration

package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/pantavisor/pv/internal/nstest"
	"github.com/pantavisor/pv/messages"
)

// ingressDevice has, besides the pools of poolsDevice's kind:
//   - direct: in the device's network namespace, serving :8081 itself;
//   - web1, web2: pool members serving :8080;
//   - edge: a proxy in the pool (the hybrid pattern), relaying :80 to web2;
//   - hostproxy: a proxy in the device's namespace (the host-proxy pattern),
//     relaying :8082 to web1 by its pool address;
//   - api: serving HTTP on a unix socket.
//
// and ingress rules: tcp :9001 → direct (direct), tcp :9080 → edge:80
// (hybrid), http :9090/ → web1, :9090/api → web2, :9090/unix → api.
func ingressDevice(t *testing.T) string {
	always := map[string]any{"policy": "always", "retry_delay": 0}
	pool := func(ip string) map[string]any {
		return map[string]any{"network": map[string]any{"pool": "lan", "ip": ip}, "auto_recovery": always,
			"exports": "services.json"}
	}
	web := []any{map[string]any{"name": "web", "type": "tcp", "port": 8080}}
	ctrs := []ctr{
		{name: "direct", group: "app", cmd: `/bin/pvapp "web" "-addr" ":8081"`,
			run:      map[string]any{"network": map[string]any{"mode": "host"}, "exports": "services.json", "auto_recovery": always},
			services: []any{map[string]any{"name": "web", "type": "tcp", "port": 8081}}},
		{name: "web1", group: "app", cmd: `/bin/pvapp "web" "-addr" ":8080"`, run: pool("10.0.5.11"), services: web},
		{name: "web2", group: "app", cmd: `/bin/pvapp "web" "-addr" ":8080"`, run: pool("10.0.5.12"), services: web},
		{name: "edge", group: "app", cmd: `/bin/pvapp "forward" ":80" "10.0.5.12:8080"`, run: pool("10.0.5.13"),
			services: []any{map[string]any{"name": "proxy", "type": "tcp", "port": 80}}},
		{name: "hostproxy", group: "app", cmd: `/bin/pvapp "forward" ":8082" "10.0.5.11:8080"`,
			run: map[string]any{"network": map[string]any{"mode": "host"}}},
		{name: "api", group: "app", cmd: `/bin/pvapp "web-unix" "/run/api.sock"`,
			run:      map[string]any{"exports": "services.json", "auto_recovery": always},
			services: []any{map[string]any{"name": "api", "type": "rest", "socket": "/run/api.sock"}}},
	}
	storage := buildStorage(t, []map[string]any{{"name": "app"}}, ctrs)
	addDeviceJSON(t, storage, `    "network": {"pools": {"lan": {"type": "bridge", "bridge": "pvbr0", "subnet": "10.0.5.0/24", "gateway": "10.0.5.1", "nat": true}}},
    "ingress": [
      {"name": "direct", "type": "tcp", "external": ":9001", "provider": "direct", "service": "web"},
      {"name": "hybrid", "type": "tcp", "external": "0.0.0.0:9080", "provider": "edge", "service": "proxy"},
      {"name": "site", "type": "http", "external": ":9090/", "provider": "web1", "service": "web"},
      {"name": "api", "type": "http", "external": ":9090/api", "provider": "web2", "service": "web"},
      {"name": "unix", "type": "http", "external": ":9090/unix", "provider": "api", "service": "api"},
      {"name": "nowhere", "type": "tcp", "external": "10.99.99.99:9000", "provider": "direct", "service": "web"}
    ],`)
	return storage
}

// fetch GETs url from this test's namespace (the device's clients are on
// the other end of a veth), retrying while the device comes up.
func fetch(t *testing.T, url string, timeout time.Duration) (int, http.Header, string) {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway || time.Now().After(deadline) {
				return resp.StatusCode, resp.Header, string(b)
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The three upstream patterns end to end, with clients in a second
// namespace: direct (tcp ingress to a host-namespace provider), host proxy
// (a proxy container in the device's namespace reaching a pool member by
// its address), hybrid (tcp ingress to a proxy isolated in the pool, which
// reaches another member); and an http listener routing by longest
// prefix to pool members and to a unix socket, following a provider that
// crashed and came back.
func TestIngressPatterns(t *testing.T) {
	requireIsolatedNet(t)
	d, pid1 := startOnLAN(t, ingressDevice(t))
	const dev = "10.77.0.2"
	d.waitContainers("all started", 30*time.Second, statusIs(messages.StatusStarted, "direct", "web1", "web2", "edge", "hostproxy", "api"))

	// Direct.
	if code, _, body := fetch(t, "http://"+dev+":9001/d", 20*time.Second); code != 200 || !strings.Contains(body, "(path /d)") {
		t.Errorf("direct: %d %q", code, body)
	}
	// Host proxy: no ingress rule, the container itself listens on the
	// device's namespace and reaches web1 across the bridge.
	if code, _, body := fetch(t, "http://"+dev+":8082/h", 20*time.Second); code != 200 || !strings.Contains(body, "(path /h)") {
		t.Errorf("host proxy: %d %q", code, body)
	}
	// Hybrid: ingress → edge (isolated in the pool) → web2.
	if code, _, body := fetch(t, "http://"+dev+":9080/y", 20*time.Second); code != 200 || !strings.Contains(body, "(path /y)") {
		t.Errorf("hybrid: %d %q", code, body)
	}
	// HTTP routing: /api → web2 with the prefix stripped, / → web1, a
	// 404 with its header, /unix → a unix socket backend.
	code, _, body := fetch(t, "http://"+dev+":9090/api/v1/x", 20*time.Second)
	hostOf := regexp.MustCompile(`hello from (\S+),`)
	if code != 200 || !strings.Contains(body, "(path /v1/x)") {
		t.Errorf("/api: %d %q", code, body)
	}
	apiHost := hostOf.FindStringSubmatch(body)
	_, _, rootBody := fetch(t, "http://"+dev+":9090/other", 10*time.Second)
	rootHost := hostOf.FindStringSubmatch(rootBody)
	if apiHost == nil || rootHost == nil || apiHost[1] == rootHost[1] || !strings.Contains(rootBody, "(path /other)") {
		t.Errorf("/api and / went to the same backend: %q / %q", body, rootBody)
	}
	code, hdr, body := fetch(t, "http://"+dev+":9090/api/missing", 10*time.Second)
	if code != 404 || hdr.Get("X-Pvapp") != "missing" {
		t.Errorf("backend 404: %d %v %q", code, hdr, body)
	}
	if code, _, body := fetch(t, "http://"+dev+":9090/unix/z", 10*time.Second); code != 200 || !strings.Contains(body, "conn=") {
		t.Errorf("/unix: %d %q", code, body)
	}

	// web2 crashes and is restarted: the listener serves again, without
	// a restart of pantavisor.
	m := d.waitContainers("web2 up", 10*time.Second, statusIs(messages.StatusStarted, "web2"))
	if err := syscall.Kill(hostPid(t, pid1, m["web2"].Pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.waitContainers("web2 back", 20*time.Second, func(m map[string]messages.ContainerInfo) bool {
		return m["web2"].Status == messages.StatusStarted && m["web2"].AutoRecovery.CurrentRetries == 1
	})
	if code, _, body := fetch(t, "http://"+dev+":9090/api/again", 20*time.Second); code != 200 || !strings.Contains(body, "(path /again)") {
		t.Errorf("after web2's restart: %d %q", code, body)
	}

	// A WebSocket-style upgrade request reaches the backend (pvapp web
	// does not upgrade: it answers, and the proxy passes that on).
	c, err := net.Dial("tcp", dev+":9090")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET /api/ws HTTP/1.1\r\nHost: dev\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
		t.Errorf("upgrade request: %v %v", resp, err)
	}

	tree, _ := d.pvcontrol("tree")
	for _, l := range []string{"ingress:0.0.0.0:9001", "ingress:0.0.0.0:9080", "ingress:0.0.0.0:9090"} {
		if !regexp.MustCompile(regexp.QuoteMeta(l) + `.*listening`).MatchString(tree) {
			t.Errorf("%s not listening:\n%s", l, tree)
		}
	}
	// An address the device does not have: that listener alone fails,
	// visibly, with the reason; everything above ran beside it.
	if !regexp.MustCompile(`ingress:10\.99\.99\.99:9000\s+ingress\s+failed.*assign requested address`).MatchString(tree) {
		t.Errorf("the unbindable listener is not shown failed:\n%s", tree)
	}
	out, _ := d.pvcontrol("request", "GET", "/metrics")
	if !regexp.MustCompile(`pv_ingress_connections_total\{listen="0.0.0.0:9090",type="http"\} [1-9]`).MatchString(out) {
		t.Errorf("no ingress traffic in /metrics:\n%s", out)
	}
}

// clientSeen GETs url until the backend (pvapp web) says it saw want as
// its client, and returns the last client it saw.
func clientSeen(t *testing.T, url, want string, timeout time.Duration) string {
	t.Helper()
	// A new connection each time: one made through the relay before the
	// forward was installed would stay with the relay.
	c := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	var seen string
	for time.Now().Before(deadline) {
		if resp, err := c.Get(url); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if seen = resp.Header.Get("X-Pvapp-Client"); resp.StatusCode == 200 && seen == want {
				return seen
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return seen
}

// The kernel path of a tcp ingress rule, with clients in a second
// namespace: a pool member behind "external": ":9080" is reached by DNAT
// (it sees the outside client's own address, where the relay would show
// the device's bridge address), while the device's own clients still go
// through the listener; after the provider crashes and comes back the
// forward is installed again; after the device stops, no rule is left in
// its namespace.
func TestIngressKernelPath(t *testing.T) {
	requireIsolatedNet(t)
	ctrs := []ctr{{name: "web", group: "app", cmd: `/bin/pvapp "web" "-addr" ":8080"`,
		run: map[string]any{"network": map[string]any{"pool": "lan"}, "exports": "services.json",
			"auto_recovery": map[string]any{"policy": "always", "retry_delay": 0}},
		services: []any{map[string]any{"name": "web", "type": "tcp", "port": 8080}}}}
	storage := buildStorage(t, []map[string]any{{"name": "app"}}, ctrs)
	addDeviceJSON(t, storage, `    "network": {"pools": {"lan": {"type": "bridge", "bridge": "pvbr0", "subnet": "10.0.5.0/24", "gateway": "10.0.5.1", "nat": true}}},
    "ingress": [{"name": "web", "type": "tcp", "external": ":9080", "provider": "web", "service": "web"}],`)
	d := startDevice(t, storage)
	pid1 := nsInit(t, d)
	// Held past the device's end: its rules are read after it stopped.
	devNet, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid1))
	if err != nil {
		t.Fatal(err)
	}
	defer devNet.Close()
	tables := func() string {
		t.Helper()
		cmd := exec.Command("nsenter", "--net=/proc/self/fd/3", "iptables-save")
		cmd.ExtraFiles = []*os.File{devNet}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("iptables-save in the device: %v\n%s", err, out)
		}
		return string(out)
	}
	linkToDevice(t, pid1, "tkp0", "lan0", "10.77.0.1/24", "10.77.0.2/24")
	const url = "http://10.77.0.2:9080/k"
	m := d.waitContainers("web up", 30*time.Second, statusIs(messages.StatusStarted, "web"))
	lease := strings.Split(m["web"].IPv4Address, "/")[0]

	if seen := clientSeen(t, url, "10.77.0.1", 20*time.Second); seen != "10.77.0.1" {
		t.Fatalf("the backend saw %q, want the outside client 10.77.0.1 (kernel path)", seen)
	}
	if ts := tables(); !strings.Contains(ts, "--to-destination "+lease+":8080") || !strings.Contains(ts, "-A PREROUTING -j PV-INGRESS") {
		t.Errorf("no forward to %s:8080 in the device:\n%s", lease, ts)
	}
	if out, _ := d.pvcontrol("-json", "tree"); !regexp.MustCompile(`"kernel":\s*"dnat to ` + regexp.QuoteMeta(lease) + `:8080"`).MatchString(out) {
		t.Errorf("/actors does not show the kernel path:\n%s", out)
	}
	// The device's own clients go through the listener (OUTPUT is not
	// rewritten).
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(pid1), "-n", "--", filepath.Join(bin, "pvapp"), "get", "http://127.0.0.1:9080/local").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "(path /local)") {
		t.Errorf("a client on the device: %v %s", err, out)
	}

	// The provider crashes and comes back: the forward is removed while
	// it is away and installed again.
	if err := syscall.Kill(hostPid(t, pid1, m["web"].Pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m = d.waitContainers("web back", 20*time.Second, func(m map[string]messages.ContainerInfo) bool {
		return m["web"].Status == messages.StatusStarted && m["web"].AutoRecovery.CurrentRetries == 1
	})
	if seen := clientSeen(t, url+"/again", "10.77.0.1", 20*time.Second); seen != "10.77.0.1" {
		t.Fatalf("after web's restart the backend saw %q, want 10.77.0.1", seen)
	}
	// web comes back at the same lease, so a client may get through
	// before the forward's reinstall is logged: wait for the log.
	n := 0
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if n = strings.Count(d.log(), "kernel path installed"); n >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if n < 2 {
		t.Errorf("kernel path installed %d times, want once per start of web:\n%s", n, d.log())
	}
	// The connections the kernel took (at least one per forward) are
	// counted from the rules, the removed forward's included, and reach
	// /metrics with the listener's own (the device's client above).
	kernelConns := regexp.MustCompile(`"kernel_connections":\s*"(\d+)"`)
	metricConns := regexp.MustCompile(`pv_ingress_connections_total\{[^}]*listen="[^"]*:9080"[^}]*\} (\d+)`)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		tree, _ := d.pvcontrol("-json", "tree")
		metrics, _ := d.pvcontrol("request", "GET", "/metrics")
		k, m := kernelConns.FindStringSubmatch(tree), metricConns.FindStringSubmatch(metrics)
		if k != nil && m != nil {
			kn, _ := strconv.Atoi(k[1])
			mn, _ := strconv.Atoi(m[1])
			if kn >= 2 && mn >= kn+1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kernel connections not counted (want >= 2 in /actors, and one more in /metrics): %q %q\n%s", k, m, metrics)
		}
	}

	if code := d.stop(30 * time.Second); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}
	if ts := tables(); strings.Contains(ts, "PV-INGRESS") || strings.Contains(ts, "DNAT") {
		t.Errorf("rules left in the device after it stopped:\n%s", ts)
	}
}

// startOnLAN starts a device on storage and links this test's namespace
// to it as its LAN (veth tlan0 here at 10.77.0.1, lan0 there at
// 10.77.0.2), where the ingress tests' clients come from. It returns the
// device and its PID 1.
//
// The clients of the kill cycles open and close several hundred
// connections a second; each one they close first waits 60 s in
// TIME_WAIT on its local port, and the default range of about 28 000
// ports ran out after a minute ("connect: cannot assign requested
// address" for a whole window between two kills, in the full profile).
// So this namespace, the test's own, reuses a port in TIME_WAIT for a new
// connection (tcp_tw_reuse=1: safe by TCP timestamps, after 1 s), as a
// busy client host would be set up. So does the device's, also made by
// the test: a provider that forwards to this namespace (the tcp kill
// cycle's) is itself such a client, and it closes first; once the relay
// carried more than 500 connections a second it ran out of ports the
// same way ("EOF" to every client for a whole window at kills 29 and 30
// of 50, in the full profile).
func startOnLAN(t *testing.T, storage string) (*device, int) {
	t.Helper()
	requireIsolatedNet(t)
	reuse := func() error { return os.WriteFile("/proc/sys/net/ipv4/tcp_tw_reuse", []byte("1"), 0o644) }
	if err := reuse(); err != nil {
		t.Fatalf("reuse of ports in TIME_WAIT in the test's namespace: %v", err)
	}
	d := startDevice(t, storage)
	pid1 := nsInit(t, d)
	ns, err := netns.GetFromPath(fmt.Sprintf("/proc/%d/ns/net", pid1))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := nstest.Do(ns, reuse); err != nil {
		t.Fatalf("reuse of ports in TIME_WAIT in the device's namespace: %v", err)
	}
	linkToDevice(t, pid1, "tlan0", "lan0", "10.77.0.1/24", "10.77.0.2/24")
	return d, pid1
}

//go:build integration

package integration

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/storage"
)

// meshConsumer's init dials the echo service once, once more with a file
// descriptor, shows the injected device node, then pings for ever; every
// line goes to its console. Each run starts with a "run" line.
const meshConsumer = `/bin/sh "-c" "trap 'exit 0' TERM; echo run; pvapp dial-unix /run/echo/s.sock hello; pvapp dial-unix -fd /run/echo/s.sock withfd; ` +
	`until [ -c /dev/xnull ]; do sleep 0.05; done; ls -ln /dev/xnull; ` +
	`until [ -S /run/api/s.sock ]; do sleep 0.05; done; pvapp get-unix /run/api/s.sock 3; ` +
	`i=0; while true; do i=$((i+1)); pvapp dial-unix /run/echo/s.sock ping$i; sleep 0.2; done"`

func meshDevice(t *testing.T) string {
	always := map[string]any{"policy": "always", "retry_delay": 0}
	return buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "prov", group: "app", cmd: `/bin/pvapp "serve-unix" "/run/prov/svc.sock"`,
			run: map[string]any{"exports": "services.json", "auto_recovery": always},
			services: []any{
				map[string]any{"name": "echo", "type": "unix", "socket": "/run/prov/svc.sock"},
				map[string]any{"name": "null", "type": "drm", "socket": "/dev/null"},
			}},
		{name: "api", group: "app", cmd: `/bin/pvapp "web-unix" "/run/api.sock"`,
			run:      map[string]any{"exports": "services.json", "auto_recovery": always},
			services: []any{map[string]any{"name": "api", "type": "rest", "socket": "/run/api.sock"}}},
		{name: "cons", group: "app", cmd: meshConsumer, run: map[string]any{"auto_recovery": always,
			"services": map[string]any{"required": []any{
				map[string]any{"name": "echo", "type": "unix", "target": "/run/echo/s.sock"},
				map[string]any{"name": "null", "type": "drm", "target": "/dev/xnull"},
				map[string]any{"name": "api", "type": "rest", "role": "reader", "target": "/run/api/s.sock"},
			}}}},
	})
}

var waitedRe = regexp.MustCompile(`/run/echo/s.sock there after (\d+) ms`)

// A consumer reaches its provider's unix socket through the socket
// injected at its target: a half-close reaches the provider (it answers
// only at EOF), a file descriptor arrives usable, a device node is made
// with the provider's number. The consumer restarted finds the socket back
// within a second; the provider restarted answers again.
func TestXconnectUnixAndDrmBetweenContainers(t *testing.T) {
	d := startDevice(t, meshDevice(t))
	d.waitConsole("cons", `reply "echo: hello"`, 30*time.Second)
	d.waitConsole("cons", `reply "echo: withfd fd: fd-content"`, 10*time.Second)
	d.waitConsole("cons", "ping1", 10*time.Second)
	if c := d.console("cons"); !regexp.MustCompile(`(?m)^crw\S* +\d+ +0 +0 +1, +3 .*/dev/xnull$`).MatchString(c) {
		t.Errorf("no char device 1,3 at /dev/xnull in the consumer:\n%s", c)
	}

	// rest: every request of one keep-alive connection reaches the
	// provider with the consumer's identity, the forged header replaced.
	d.waitConsole("cons", "pvapp: http 200", 10*time.Second)
	if n := strings.Count(d.console("cons"), `pvapp: http 200 conn=1 client=["cons"] role=["reader"]`); n != 3 {
		t.Errorf("%d of 3 requests carried the consumer's identity on one connection:\n%s", n, d.console("cons"))
	}

	out, code := d.pvcontrol("graph", "ls", "--json")
	var graph []messages.LinkInfo
	if code != 0 || json.Unmarshal([]byte(out), &graph) != nil || len(graph) != 3 {
		t.Fatalf("graph ls (%d): %s", code, out)
	}
	for _, l := range graph {
		if l.Consumer != "cons" || (l.Provider != "prov" && l.Provider != "api") || l.ConsumerPid <= 0 || l.ProviderPid <= 0 {
			t.Errorf("graph entry %+v", l)
		}
	}
	tree, _ := d.pvcontrol("tree")
	for _, l := range []string{"link:cons:echo", "link:cons:null", "link:cons:api"} {
		if !regexp.MustCompile(regexp.QuoteMeta(l) + `.*established`).MatchString(tree) {
			t.Errorf("%s not established in the tree:\n%s", l, tree)
		}
	}

	// The consumer dies and is restarted: a new mount namespace, into
	// which the socket is injected again.
	pid1 := nsInit(t, d)
	m := d.waitContainers("both started", 10*time.Second, statusIs(messages.StatusStarted, "prov", "cons"))
	if err := syscall.Kill(hostPid(t, pid1, m["cons"].Pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The first dial of the second run: how long after the consumer's
	// init started the socket was back.
	var w []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		if runs := strings.SplitN(d.console("cons"), "run\n", 3); len(runs) == 3 {
			if w = waitedRe.FindStringSubmatch(runs[2]); w != nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer did not dial again after its restart:\n%s", d.console("cons"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ms, _ := strconv.Atoi(w[1]); ms > 1000 {
		t.Errorf("the socket took %d ms to come back after the consumer restarted (want ≤ 1000)", ms)
	}
	t.Logf("socket back %s ms after the consumer's restart", w[1])
	d.waitConsole("cons", `reply "echo: withfd fd: fd-content"`, 10*time.Second)

	// The provider dies and is restarted: new connections reach it again.
	m = d.waitContainers("both started", 10*time.Second, statusIs(messages.StatusStarted, "prov", "cons"))
	if err := syscall.Kill(hostPid(t, pid1, m["prov"].Pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.waitContainers("provider back", 20*time.Second, func(m map[string]messages.ContainerInfo) bool {
		return m["prov"].Status == messages.StatusStarted && m["prov"].AutoRecovery.CurrentRetries == 1
	})
	mark := len(d.console("cons"))
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(d.console("cons")[mark:], `reply "echo: ping`) {
		if time.Now().After(deadline) {
			t.Fatalf("no answer through the link after the provider restarted:\n%s", d.console("cons")[mark:])
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The supervisor dies: PID 1 starts it again, and the new one
	// re-adopts both containers (neither restarts) and makes the link
	// again, whose proxy died with the old one.
	before := d.waitContainers("both started", 10*time.Second, statusIs(messages.StatusStarted, "prov", "cons"))
	sup := supervisor(d)
	if sup == 0 {
		t.Fatal("no supervisor")
	}
	syscall.Kill(sup, syscall.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if n := supervisor(d); n != 0 && n != sup {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new supervisor 10 s after the kill")
		}
	}
	after := d.waitContainers("both re-adopted", 20*time.Second, statusIs(messages.StatusStarted, "prov", "cons"))
	for _, n := range []string{"prov", "cons"} {
		if after[n].Pid != before[n].Pid {
			t.Errorf("%s restarted by the re-adoption: pid %d, was %d", n, after[n].Pid, before[n].Pid)
		}
	}
	mark = len(d.console("cons"))
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(d.console("cons")[mark:], `reply "echo: ping`) {
		if time.Now().After(deadline) {
			t.Fatalf("no answer through the link after the supervisor was re-adopted:\n%s", d.console("cons")[mark:])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pinger dials the echo service every 0.2 s for ever.
const pinger = `/bin/sh "-c" "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); pvapp dial-unix /run/echo/s.sock ping$i; sleep 0.2; done"`

func updateMesh(t *testing.T, xWord string, withConsumer bool) string {
	ctrs := []ctr{
		{name: "prov", group: "app", cmd: `/bin/pvapp "serve-unix" "/run/prov/svc.sock"`,
			run:      map[string]any{"exports": "services.json"},
			services: []any{map[string]any{"name": "echo", "type": "unix", "socket": "/run/prov/svc.sock"}}},
		{name: "x", group: "app", cmd: echoer(xWord)},
	}
	if withConsumer {
		ctrs = append(ctrs, ctr{name: "cons", group: "app", cmd: pinger, run: map[string]any{
			"services": map[string]any{"required": []any{
				map[string]any{"name": "echo", "type": "unix", "target": "/run/echo/s.sock"}}}}})
	}
	return buildStorage(t, []map[string]any{{"name": "app", "status_goal": "STARTED", "timeout": 30}}, ctrs)
}

// A non-reboot update that keeps both ends keeps the link working (the
// next revision's link is made in the kept consumer; the old one's removal
// leaves it); one that removes the consumer removes its link.
func TestXconnectAcrossUpdates(t *testing.T) {
	dir := updateMesh(t, "x-v1", true)
	d := startDeviceEnv(t, dir, commitDelay)
	d.waitConsole("cons", `reply "echo: ping1"`, 30*time.Second)
	before := pidsOf(d.waitContainers("first boot", 10*time.Second, statusIs(messages.StatusStarted, "prov", "cons", "x")))

	d.upload(updateMesh(t, "x-v2", true), "v2")
	if out, code := d.pvcontrol("cmd", "run", "locals/v2"); code != 0 {
		t.Fatalf("cmd run: %d %s", code, out)
	}
	if p, seen := d.waitProgress("locals/v2", 60*time.Second); p.Status != storage.StatusUpdated {
		t.Fatalf("v2: %+v (seen %v)", p, seen)
	}
	after := pidsOf(d.waitContainers("after v2", 10*time.Second, statusIs(messages.StatusStarted, "prov", "cons", "x")))
	if after["cons"] != before["cons"] || after["prov"] != before["prov"] {
		t.Fatalf("the link's ends were restarted: %v → %v", before, after)
	}
	mark := len(d.console("cons"))
	time.Sleep(time.Second) // the old revision's link is gone by now
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(d.console("cons")[mark:], `reply "echo: ping`) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the kept consumer lost its link in the update:\n%s\n%s", d.console("cons")[mark:], d.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if tree, _ := d.pvcontrol("tree"); !regexp.MustCompile(`link:cons:echo.*established`).MatchString(tree) {
		t.Errorf("no established link after v2:\n%s", tree)
	}

	d.upload(updateMesh(t, "x-v2", false), "v3")
	if out, code := d.pvcontrol("cmd", "run", "locals/v3"); code != 0 {
		t.Fatalf("cmd run: %d %s", code, out)
	}
	if p, seen := d.waitProgress("locals/v3", 60*time.Second); p.Status != storage.StatusUpdated {
		t.Fatalf("v3: %+v (seen %v)", p, seen)
	}
	if tree, _ := d.pvcontrol("tree"); strings.Contains(tree, "link:") {
		t.Errorf("a link outlived its consumer:\n%s", tree)
	}
	if out, _ := d.pvcontrol("graph", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("graph after the consumer went: %s", out)
	}
}

// stuckMesh is a provider that writes to each connection for ever, a
// consumer that holds one connection to it through a unix link and reads
// nothing (the link's relay towards it is stuck, its sockets full), and a
// bystander printing xWord, for an update that keeps the link's ends.
func stuckMesh(t *testing.T, xWord string) string {
	return buildStorage(t, []map[string]any{{"name": "app", "status_goal": "STARTED", "timeout": 30}}, []ctr{
		{name: "prov", group: "app", cmd: `/bin/pvapp "trickle-unix" "/run/prov/svc.sock"`,
			run:      map[string]any{"exports": "services.json"},
			services: []any{map[string]any{"name": "flow", "type": "unix", "socket": "/run/prov/svc.sock"}}},
		{name: "cons", group: "app", cmd: `/bin/pvapp "hold-unix" "/run/flow/s.sock"`,
			run: map[string]any{"services": map[string]any{"required": []any{
				map[string]any{"name": "flow", "type": "unix", "target": "/run/flow/s.sock"}}}}},
		{name: "x", group: "app", cmd: echoer(xWord)},
	})
}

// An update that keeps both ends of a stuck link (its consumer reads
// nothing while its provider writes) closes the old revision's link all
// the same: the link's close does not wait on the stuck relay. The
// relay's callback on the provider's connection once waited there to
// write to the consumer's, and the close of the provider's connection,
// which waits for that callback, hung the old link's close for ever (in
// a goroutine of its own: its listener, connections and injected socket
// leaked).
func TestXconnectStuckLinkRemoved(t *testing.T) {
	d := startDeviceEnv(t, stuckMesh(t, "x-v1"), commitDelay)
	d.waitConsole("cons", "pvapp: holding", 30*time.Second)
	// Stuck once the bytes relayed stop growing.
	relayed := regexp.MustCompile(`"bytes_down":\s*"(\d+)"`)
	var last string
	for still, deadline := 0, time.Now().Add(20*time.Second); still < 3; time.Sleep(200 * time.Millisecond) {
		tree, _ := d.pvcontrol("-json", "tree")
		m := relayed.FindStringSubmatch(tree)
		switch {
		case m == nil:
			still = 0
		case m[1] == last && m[1] != "0":
			still++
		default:
			still, last = 0, m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the link did not get stuck (last %q):\n%s", last, tree)
		}
	}
	closed := func() int { return strings.Count(d.log(), `msg="link closed"`) }
	closedBefore := closed()
	d.upload(stuckMesh(t, "x-v2"), "v2")
	if out, code := d.pvcontrol("cmd", "run", "locals/v2"); code != 0 {
		t.Fatalf("cmd run: %d %s", code, out)
	}
	if p, seen := d.waitProgress("locals/v2", 60*time.Second); p.Status != storage.StatusUpdated {
		t.Fatalf("v2: %+v (seen %v)\n%s", p, seen, d.log())
	}
	// The old link's actor goes at once; its close (listener,
	// connections, injected socket) runs on, and says when it is done.
	for deadline := time.Now().Add(10 * time.Second); closed() == closedBefore; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the old revision's stuck link was not closed 10 s after the update:\n%s", d.log())
		}
	}
	if tree, _ := d.pvcontrol("tree"); strings.Count(tree, "link:cons:flow") != 1 {
		t.Errorf("want the new revision's link alone:\n%s", tree)
	}
}

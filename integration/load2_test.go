//go:build integration

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
)

// manyLinksConsumers is how many consumers share the links: enough that
// links are set up in several mount namespaces at once, few enough that
// the container count does not dominate the time measured.
const manyLinksConsumers = 4

// TestReliabilityManyLinks: one provider exports n unix services (all on
// its one echo socket) and manyLinksConsumers consumers require n/4 each.
// Expected: every link is in the graph with both ends' pids within a
// minute; from inside each consumer, its first and last link answer the
// echo; the supervisor's RSS and fds are reported; the device then stops
// on SIGTERM with exit 0 and leaves no process behind.
func TestReliabilityManyLinks(t *testing.T) {
	isolated.Require(t)
	n := runs(t, 200, 40)
	var done, passed int
	var fig string
	record(t, fmt.Sprintf("%d links in one revision", n), &done, &passed, func() string { return fig })
	done = 1

	always := map[string]any{"policy": "always", "retry_delay": 0}
	var services []any
	for i := range n {
		services = append(services, map[string]any{"name": fmt.Sprintf("s%03d", i), "type": "unix", "socket": "/run/prov/svc.sock"})
	}
	ctrs := []ctr{{name: "prov", group: "app", cmd: `/bin/pvapp "serve-unix" "/run/prov/svc.sock"`,
		run: map[string]any{"exports": "services.json", "auto_recovery": always}, services: services}}
	per := n / manyLinksConsumers
	names := []string{"prov"}
	for c := range manyLinksConsumers {
		var req []any
		for i := c * per; i < (c+1)*per; i++ {
			req = append(req, map[string]any{"name": fmt.Sprintf("s%03d", i), "type": "unix", "target": fmt.Sprintf("/run/s%03d/s.sock", i)})
		}
		first, last := c*per, (c+1)*per-1
		// The consumer uses its first and last link once, then idles.
		cmd := fmt.Sprintf(`/bin/sh "-c" "trap 'exit 0' TERM; pvapp dial-unix /run/s%03d/s.sock first%03d; pvapp dial-unix /run/s%03d/s.sock last%03d; while true; do sleep 1; done"`,
			first, first, last, last)
		name := fmt.Sprintf("c%d", c)
		names = append(names, name)
		ctrs = append(ctrs, ctr{name: name, group: "app", cmd: cmd,
			run: map[string]any{"services": map[string]any{"required": req}}})
	}
	start := time.Now()
	d := startDevice(t, buildStorage(t, []map[string]any{{"name": "app", "timeout": 120}}, ctrs))
	m := d.waitContainers("all STARTED", 2*time.Minute, statusIs(messages.StatusStarted, names...))

	// All links established: each in the graph with both ends' pids.
	var graph []messages.LinkInfo
	established := func() int {
		out, code := d.pvcontrol("graph", "ls", "--json")
		graph = nil
		if code != 0 || json.Unmarshal([]byte(out), &graph) != nil {
			return -1
		}
		k := 0
		for _, l := range graph {
			if l.Provider == "prov" && l.ProviderPid > 0 && l.ConsumerPid > 0 {
				k++
			}
		}
		return k
	}
	deadline := time.Now().Add(time.Minute)
	k := established()
	for k != n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		k = established()
	}
	allIn := time.Since(start)
	if k != n {
		t.Errorf("%d of %d links established after %v: %+v", k, n, allIn, graph)
	}

	// A sample used end to end from inside every consumer.
	used := 0
	for c := range manyLinksConsumers {
		first, last := c*per, (c+1)*per-1
		name := fmt.Sprintf("c%d", c)
		d.waitConsole(name, fmt.Sprintf(`reply "echo: first%03d"`, first), 30*time.Second)
		d.waitConsole(name, fmt.Sprintf(`reply "echo: last%03d"`, last), 30*time.Second)
		used += 2
	}
	sup := supervisor(d)
	rss, fds := rssKiB(sup), fdCount(sup)
	var pids []int
	for _, c := range m {
		if c.Pid > 0 {
			pids = append(pids, c.Pid)
		}
	}
	pids = d.hostPids(t, pids)
	code := d.stop(time.Minute)
	left := alive(pids)
	fig = fmt.Sprintf("%d/%d links established in %.1fs from start; %d used end to end; supervisor RSS %.1f MiB, %d fds; exit %d, %d processes left",
		k, n, allIn.Seconds(), used, float64(rss)/1024, fds, code, len(left))
	if code != 0 {
		t.Errorf("pantavisor exited %d after SIGTERM", code)
	}
	if len(left) > 0 {
		t.Errorf("processes alive after the stop: %s", strings.Join(left, "\n"))
	}
	if !t.Failed() {
		passed = 1
	}
}

// ingressConn is one connection of the ingress client: when it started
// and ended, and whether its bytes came back whole.
type ingressConn struct {
	start, end time.Time
	err        error // why the attempt failed; nil: it succeeded
}

// TestReliabilityIngressDuringRestarts: a tcp ingress rule (:9001) leads to
// "fwd", a host-network container relaying :8081 to a tcp echo this test
// serves on its own address; a client in the test's namespace pushes 64 KiB
// per fresh connection through the ingress as fast as it can while fwd's
// init is SIGKILLed every ~2 s (auto-recovery always). Expected: every
// connection either echoes its bytes exactly or fails with an error, never
// with other bytes; after each kill a new connection succeeds within 5 s
// (p50/max measured); the supervisor's goroutines and fds come back to
// their level before the kills, within a small tolerance.
func TestReliabilityIngressDuringRestarts(t *testing.T) {
	requireIsolatedNet(t)
	kills := runs(t, 50, 5)
	var done, passed int
	var fig string
	record(t, fmt.Sprintf("tcp ingress at full speed, provider killed %d times", kills), &done, &passed, func() string { return fig })
	done = 1

	always := map[string]any{"policy": "always", "retry_delay": 0}
	storage := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "fwd", group: "app", cmd: `/bin/pvapp "forward" ":8081" "10.77.0.1:7000"`,
			run:      map[string]any{"network": map[string]any{"mode": "host"}, "exports": "services.json", "auto_recovery": always},
			services: []any{map[string]any{"name": "echo", "type": "tcp", "port": 8081}}},
	})
	addDeviceJSON(t, storage, `    "ingress": [{"name": "echo", "type": "tcp", "external": ":9001", "provider": "fwd", "service": "echo"}],`)
	d, pid1 := startOnLAN(t, storage)

	// The echo behind the provider, on the address this test made.
	ln, err := net.Listen("tcp", "10.77.0.1:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	m := d.waitContainers("fwd started", 30*time.Second, statusIs(messages.StatusStarted, "fwd"))

	const size = 64 << 10
	var wrong atomic.Int64
	one := func(seq int) error {
		c, err := net.DialTimeout("tcp", "10.77.0.2:9001", 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(seq*31 + i*7)
		}
		go func() { _, _ = c.Write(msg) }()
		got := make([]byte, size)
		n, err := io.ReadFull(c, got)
		// Whatever came back, even on a cut connection, must be a prefix
		// of what was sent.
		if !bytes.Equal(got[:n], msg[:n]) {
			wrong.Add(1)
			return fmt.Errorf("%d bytes back, not all of them sent", n)
		}
		return err
	}
	// Warm up: the path works before the first kill.
	deadline := time.Now().Add(20 * time.Second)
	for one(0) != nil {
		if time.Now().After(deadline) {
			t.Fatal("no echo through the ingress before the kills")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	r := killDuring(t, d, pid1, "fwd", kills, 0, m, one)
	if w := wrong.Load(); w > 0 {
		t.Errorf("%d connections returned bytes other than those sent", w)
	}
	okN, failN := r.outcome()
	fig = fmt.Sprintf("%d conns of 64 KiB: %d echoed, %d failed cleanly, %d wrong bytes; %s",
		len(r.conns), okN, failN, wrong.Load(), r.summary())
	if !t.Failed() {
		passed = 1
	}
}

// killRun is what killDuring saw: the client's attempts, the kills, and
// the supervisor's footprint before and after.
type killRun struct {
	conns              []ingressConn
	killedAt           []time.Time
	recov              []time.Duration // sorted
	before, after      sample
	beforePipes, pipes int
}

// outcome counts the attempts that succeeded and failed.
func (r *killRun) outcome() (okN, failN int) {
	for _, c := range r.conns {
		if c.err == nil {
			okN++
		} else {
			failN++
		}
	}
	return okN, failN
}

// summary gives the recoveries and the supervisor's footprint, for the
// figure.
func (r *killRun) summary() string {
	var p50, mx time.Duration
	if len(r.recov) > 0 {
		p50, mx = pct(r.recov, 50), r.recov[len(r.recov)-1]
	}
	return fmt.Sprintf("recovery p50 %s, max %s; goroutines %d → %d, fds %d (%d pipes) → %d (%d pipes)",
		ms(p50), ms(mx), r.before.goroutines, r.after.goroutines, r.before.fds, r.beforePipes, r.after.fds, r.pipes)
}

// killDuring runs one (an attempt through the ingress; seq numbers it;
// nil when it succeeded, else why not) over and over while it SIGKILLs
// the init of container name every ~2 s, kills times (m: the containers
// as last seen). It fails t when an
// interval between kills had no successful attempt after its kill, when
// a recovery took over 5 s, or when the supervisor's goroutines and fds
// do not come back to their level before the kills (kept: how many more
// fds the proxy may keep by design, its idle backend connections).
func killDuring(t *testing.T, d *device, pid1 int, name string, kills, kept int, m map[string]messages.ContainerInfo, one func(seq int) error) *killRun {
	t.Helper()
	r := &killRun{}
	sup := supervisor(d)
	r.before = d.footprint(sup)
	r.beforePipes = pipeFds(sup)

	var mu sync.Mutex
	stop := make(chan struct{})
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		for seq := 1; ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			st := time.Now()
			err := one(seq)
			mu.Lock()
			r.conns = append(r.conns, ingressConn{st, time.Now(), err})
			mu.Unlock()
			if err != nil {
				// A failed dial returns at once: do not spin on it.
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	for range kills {
		pid := m[name].Pid
		next := time.Now().Add(2 * time.Second)
		if err := syscall.Kill(hostPid(t, pid1, pid), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		r.killedAt = append(r.killedAt, time.Now())
		d.waitRestarted(name, pid)
		m = d.waitContainers(name+" started", 30*time.Second, statusIs(messages.StatusStarted, name))
		time.Sleep(time.Until(next))
	}
	// Let the last restart be served before stopping the client.
	time.Sleep(2 * time.Second)
	close(stop)
	<-clientDone

	for i, k := range r.killedAt {
		var rec time.Duration = -1
		for _, c := range r.conns {
			if c.err == nil && c.start.After(k) {
				rec = c.end.Sub(k)
				break
			}
		}
		if rec < 0 || (i+1 < len(r.killedAt) && k.Add(rec).After(r.killedAt[i+1])) {
			// What the client did meanwhile tells a stall (one long
			// attempt) from a run of quick failures, and why they
			// failed.
			end := time.Now()
			if i+1 < len(r.killedAt) {
				end = r.killedAt[i+1]
			}
			n, longest := 0, time.Duration(0)
			var whys []string
			for _, c := range r.conns {
				if c.end.After(k) && c.start.Before(end) {
					n++
					longest = max(longest, c.end.Sub(c.start))
					if why := fmt.Sprint(c.err); c.err != nil && len(whys) < 3 && !slices.Contains(whys, why) {
						whys = append(whys, why)
					}
				}
			}
			t.Errorf("no attempt succeeded after kill %d before the next one (%d attempts in that window, the longest %v; failures: %s)",
				i+1, n, longest.Round(time.Millisecond), strings.Join(whys, "; "))
			continue
		}
		r.recov = append(r.recov, rec)
	}
	slices.Sort(r.recov)
	if len(r.recov) > 0 && r.recov[len(r.recov)-1] > 5*time.Second {
		t.Errorf("recovery took %v (want ≤ 5s)", r.recov[len(r.recov)-1])
	}

	// Back to the level before the kills: the ingress's relayed
	// connections and the restarted container's watchers are all gone.
	// Pipes are counted apart: a relayed tcp connection holds splice pipes
	// only while it moves bytes, and Go keeps the pipes of finished
	// splices in a pool until a garbage collection empties it (an idle
	// supervisor may not collect for minutes). The pool holds at most what
	// the busiest instant used, a few pairs here; a leak would be a pair
	// per connection, thousands. So the other fds are held to the level
	// before and pipes to 8 pairs. The goroutine tolerance covers the
	// /metrics request itself and a harness control client still closing.
	const tolG, tolF, maxPipes = 4, 1, 16
	back := func() bool {
		return r.after.goroutines <= r.before.goroutines+tolG && r.after.fds-r.pipes <= r.before.fds-r.beforePipes+tolF+kept && r.pipes <= maxPipes
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r.after, r.pipes = d.footprint(sup), pipeFds(sup)
		if back() || time.Now().After(deadline) {
			break
		}
	}
	if !back() {
		t.Errorf("supervisor did not come back: goroutines %d → %d, fds %d (%d pipes) → %d (%d pipes)",
			r.before.goroutines, r.after.goroutines, r.before.fds, r.beforePipes, r.after.fds, r.pipes)
	}
	return r
}

// pipeFds is how many of pid's descriptors are pipes.
func pipeFds(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}

package actors

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/revtest"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// fakePoolNet records pool setups and teardowns; its events share the fake
// engine's log so that their order with container events can be checked.
type fakePoolNet struct {
	e    *fakeEngine
	fail map[string]bool
	// hold, when set for a pool, holds its setup until it is closed.
	hold map[string]chan struct{}
	mu   sync.Mutex
}

func (f *fakePoolNet) Setup(p state.Pool, peers []string) (PoolSetup, error) {
	if h := f.hold[p.Name]; h != nil {
		<-h
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[p.Name] {
		return nil, errors.New("create bridge " + p.Bridge + ": operation not permitted")
	}
	f.e.record("setup " + p.Name + " peers=" + strings.Join(peers, ","))
	return fakeSetup{f.e, p.Name}, nil
}

type fakeSetup struct {
	e    *fakeEngine
	name string
}

func (s fakeSetup) Teardown() error  { s.e.record("teardown " + s.name); return nil }
func (s fakeSetup) Describe() string { return "fake " + s.name }

func pooledState(t *testing.T) *state.State {
	t.Helper()
	doc := map[string]any{
		"#spec": state.SpecSystem1,
		"device.json": map[string]any{
			"groups": []any{map[string]any{"name": "app"}},
			"network": map[string]any{"pools": map[string]any{
				"lan":  map[string]any{"bridge": "pvbr0", "subnet": "10.0.5.0/29", "gateway": "10.0.5.1", "nat": true},
				"iso":  map[string]any{"bridge": "pvbr1", "subnet": "10.0.6.0/24", "gateway": "10.0.6.1"},
				"wifi": map[string]any{"type": "macvlan", "parent": "wlan0", "subnet": "192.168.7.0/24", "gateway": "192.168.7.1"},
			}},
		},
		"web/run.json": map[string]any{"name": "web", "group": "app", "network": map[string]any{"pool": "lan"},
			"auto_recovery": map[string]any{"policy": "always"}},
		"db/run.json": map[string]any{"name": "db", "group": "app", "network": map[string]any{"pool": "lan", "ip": "10.0.5.6", "mac": "02:aa:00:00:00:06"},
			"auto_recovery": map[string]any{"policy": "always"}},
		"host/run.json": map[string]any{"name": "host", "group": "app", "auto_recovery": map[string]any{"policy": "no"}},
	}
	data, _ := json.Marshal(revtest.WithRootVolumes(doc))
	st, err := state.Parse(data, state.Options{AppEngine: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestPoolsLeaseAndTeardown(t *testing.T) {
	e := newFakeEngine()
	sys := startSystemCfg(t, Config{State: pooledState(t), Engine: e, PoolNet: &fakePoolNet{e: e}})
	cs := waitStatus(t, sys, map[string]messages.Status{"web": messages.StatusStarted, "db": messages.StatusStarted, "host": messages.StatusStarted})
	byName := map[string]messages.ContainerInfo{}
	for _, c := range cs {
		byName[c.Name] = c
	}
	if c := byName["db"]; c.IPv4Address != "10.0.5.6/29" || c.MACAddress != "02:aa:00:00:00:06" || c.Pool != "lan" {
		t.Errorf("db: %q %q %q", c.IPv4Address, c.MACAddress, c.Pool)
	}
	web := byName["web"]
	if web.IPv4Address != "10.0.5.2/29" || web.MACAddress != "02:00:0a:00:05:02" {
		t.Errorf("web: %q %q", web.IPv4Address, web.MACAddress)
	}
	if c := byName["host"]; c.IPv4Address != "" || c.Pool != "" {
		t.Errorf("host-network container got a lease: %+v", c)
	}
	// Restarts keep the lease, dynamic and static.
	for i := 0; i < 3; i++ {
		e.run("web").Exit(1, 0)
		e.run("db").Exit(1, 0)
		waitEvents(t, e, "start web", i+2, 5*time.Second)
		waitEvents(t, e, "start db", i+2, 5*time.Second)
	}
	if n := countEvents(e, "lease web 10.0.5.2/29 02:00:0a:00:05:02"); n != 4 {
		t.Errorf("web leases: %d (%v)", n, e.Events())
	}
	if n := countEvents(e, "lease db 10.0.5.6/29 02:aa:00:00:00:06"); n != 4 {
		t.Errorf("db leases: %d", n)
	}
	ev := e.Events()
	if index(ev, "setup lan peers=pvbr1") < 0 || index(ev, "setup iso peers=pvbr0") < 0 {
		t.Errorf("pools not set up with their peers: %v", ev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sys.Shutdown(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	ev = e.Events()
	td := index(ev, "teardown lan")
	if td < 0 || td < index(ev, "unmount web") || td < index(ev, "unmount db") {
		t.Errorf("pool torn down before its containers were: %v", ev)
	}
}

func TestPoolSetupFailureFailsItsContainers(t *testing.T) {
	e := newFakeEngine()
	sys := startSystemCfg(t, Config{State: pooledState(t), Engine: e, PoolNet: &fakePoolNet{e: e, fail: map[string]bool{"lan": true}}})
	waitStatus(t, sys, map[string]messages.Status{"host": messages.StatusStarted})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := info(t, sys, "web")
		if strings.Contains(c.Error, "pool lan is not available: create bridge pvbr0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web error: %q (%s)", c.Error, c.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := countEvents(e, "start web"); n != 0 {
		t.Errorf("web started without its network")
	}
	tree := sys.Tree()
	var pool *messages.Node
	for _, n := range tree.Children[0].Children {
		if n.Path == "root/rev-0/pool:lan" {
			pool = n
		}
	}
	if pool == nil || pool.Kind != "pool" || pool.Status != "failed" {
		t.Errorf("pool node: %+v", pool)
	}
}

// logBuffer collects a System's log for tests that check what was logged.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A Go panic in a pool actor is supervised as a pool's: logged as one,
// restarted within its budget with its bridge and leases re-adopted (no
// second setup, the same addresses), then stopped for good, its setup
// removed and its failure shown in the tree; the device shuts down cleanly.
func TestPoolActorPanicHandledAsPool(t *testing.T) {
	e := newFakeEngine()
	logs := &logBuffer{}
	sys := startSystemCfg(t, Config{State: pooledState(t), Engine: e, PoolNet: &fakePoolNet{e: e},
		Log: slog.New(slog.NewTextHandler(logs, nil))})
	waitStatus(t, sys, map[string]messages.Status{"web": messages.StatusStarted, "db": messages.StatusStarted})

	sys.injectPanic(t, "pool:lan")
	pool := waitNode(t, sys, "root/rev-0/pool:lan", func(n *messages.Node) bool { return n.ActorRestarts == 1 })
	if pool.Status != "ready" || pool.Info["leases"] != "2/5" {
		t.Errorf("restarted pool: %s leases %s, want ready with 2/5", pool.Status, pool.Info["leases"])
	}
	if !strings.Contains(logs.String(), `msg="pool actor panicked" rev=0 pool=lan panic="injected by the test"`) {
		t.Errorf("the panic is not logged as a pool's:\n%s", logs)
	}
	if strings.Contains(logs.String(), "container actor panicked") {
		t.Errorf("a pool's panic logged as a container's:\n%s", logs)
	}
	// Re-adopted: still one setup, and a restarted container keeps its
	// address from the restarted pool.
	e.run("web").Exit(1, 0)
	waitEvents(t, e, "start web", 2, 5*time.Second)
	if n := countEvents(e, "lease web 10.0.5.2/29 02:00:0a:00:05:02"); n != 2 {
		t.Errorf("web's lease after the pool's restart: %v", e.Events())
	}
	if n := countEvents(e, "setup lan peers=pvbr1"); n != 1 {
		t.Errorf("pool set up %d times, want once: %v", n, e.Events())
	}

	// Past the budget (3 a minute) the pool is stopped for good.
	for i := 0; i < 3; i++ {
		sys.injectPanic(t, "pool:lan")
	}
	gone := waitNode(t, sys, "root/rev-0/pool:lan", func(n *messages.Node) bool { return n.Status == "gone" })
	if gone.Kind != "pool" || !strings.Contains(gone.LastFailure, "actor panicked repeatedly") {
		t.Errorf("stopped pool in the tree: %+v", gone)
	}
	if !strings.Contains(logs.String(), `msg="pool actor keeps panicking; stopping it" rev=0 pool=lan`) {
		t.Errorf("giving up on the pool is not logged as a pool's:\n%s", logs)
	}
	waitEvents(t, e, "teardown lan", 1, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sys.Shutdown(ctx, "test"); err != nil {
		t.Fatalf("shutdown with a pool stopped: %v", err)
	}
	if n := countEvents(e, "teardown lan"); n != 1 {
		t.Errorf("lan torn down %d times: %v", n, e.Events())
	}
}

// waitNode waits until the actor at path is in the tree and ok says so.
func waitNode(t *testing.T, sys *System, path string, ok func(*messages.Node) bool) *messages.Node {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if n := findNode(sys.Tree(), path); n != nil && ok(n) {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("timeout waiting for %s; tree: %+v", path, sys.Tree())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func findNode(n *messages.Node, path string) *messages.Node {
	if n == nil {
		return nil
	}
	if n.Path == path {
		return n
	}
	for _, c := range n.Children {
		if f := findNode(c, path); f != nil {
			return f
		}
	}
	return nil
}

// pooledUpdateState is a revision with the pool lan (a /29: five
// addresses for containers) and the given containers on it, each with its
// static address or none ("").
func pooledUpdateState(t *testing.T, ctrs map[string]string) *state.State {
	t.Helper()
	doc := map[string]any{
		"#spec": state.SpecSystem1,
		"device.json": map[string]any{
			"groups": []any{map[string]any{"name": "app", "restart_policy": "container"}},
			"network": map[string]any{"pools": map[string]any{
				"lan": map[string]any{"bridge": "pvbr0", "subnet": "10.0.5.0/29", "gateway": "10.0.5.1"},
			}},
		},
	}
	for name, ip := range ctrs {
		nw := map[string]any{"pool": "lan"}
		if ip != "" {
			nw["ip"] = ip
		}
		doc[name+"/run.json"] = map[string]any{"name": name, "group": "app", "network": nw}
	}
	return parseState(t, doc)
}

// A non-reboot update hands the pool, and its leases, to the next
// revision: those of the containers the update removed are freed there.
// Before, they were held for the life of the process: the static address
// of a removed container given to a new one failed ("held by old"), and
// each update replacing a dynamic one used up an address for good.
func TestNonRebootUpdateFreesTheLeasesOfRemovedContainers(t *testing.T) {
	u := newFakeUpdates("1")
	cfg := Config{State: pooledUpdateState(t, map[string]string{"old": "10.0.5.6", "d0": "", "d1": "", "d2": "", "d3": ""})}
	rig := startUpdateRig(t, cfg, u)
	waitStatus(t, rig.sys, map[string]messages.Status{"old": messages.StatusStarted, "d0": messages.StatusStarted,
		"d1": messages.StatusStarted, "d2": messages.StatusStarted, "d3": messages.StatusStarted})
	// The pool's five addresses are all leased; the update replaces old
	// (static) by new, with old's address, and d3 (dynamic) by d4.
	u.states["locals/b"] = pooledUpdateState(t, map[string]string{"new": "10.0.5.6", "d0": "", "d1": "", "d2": "", "d4": ""})
	if err := rig.sys.RunRevision("locals/b", false); err != nil {
		t.Fatal(err)
	}
	if msg := u.waitStatus(t, "locals/b", storage.StatusUpdated); msg != storage.MsgUpdated {
		t.Fatalf("update: %q; events %v", msg, rig.e.Events())
	}
	cs := waitStatus(t, rig.sys, map[string]messages.Status{"new": messages.StatusStarted, "d0": messages.StatusStarted,
		"d1": messages.StatusStarted, "d2": messages.StatusStarted, "d4": messages.StatusStarted})
	for _, c := range cs {
		if c.Name == "new" && c.IPv4Address != "10.0.5.6/29" {
			t.Errorf("new got %q, want old's 10.0.5.6/29", c.IPv4Address)
		}
		if c.Name == "d4" && c.IPv4Address == "" {
			t.Error("d4 got no address")
		}
	}
}

// A pool stopped while its setup still runs is torn down once the setup
// reports, before the stop is answered. Before, the stop was answered at
// once: the revision went on, and the bridge and rules the setup made
// after it were never torn down.
func TestPoolStoppedDuringItsSetupIsTornDown(t *testing.T) {
	e := newFakeEngine()
	hold := make(chan struct{})
	st := pooledState(t)
	sys := startSystemCfg(t, Config{State: st, Engine: e, PoolNet: &fakePoolNet{e: e, hold: map[string]chan struct{}{"iso": hold}}})
	waitStatus(t, sys, map[string]messages.Status{"web": messages.StatusStarted, "db": messages.StatusStarted})
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- sys.Shutdown(ctx, "test")
	}()
	time.Sleep(100 * time.Millisecond) // the shutdown reaches the pools
	close(hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ev := e.Events()
	if s, td := index(ev, "setup iso peers=pvbr0"), index(ev, "teardown iso"); s < 0 || td < s {
		t.Errorf("iso set up at %d, torn down at %d: %v", s, td, ev)
	}
}

// A pool actor stopped during its setup without StopPool (here: it kept
// panicking, so the revision stopped it) abandons the setup, which tears
// down what it made when it ends: its result would reach no one, and the
// bridge and rules would stay on the device, owned by nobody.
func TestPoolStoppedWithoutStopPoolDuringItsSetupIsTornDown(t *testing.T) {
	e := newFakeEngine()
	hold := make(chan struct{})
	sys := startSystemCfg(t, Config{State: pooledState(t), Engine: e, PoolNet: &fakePoolNet{e: e, hold: map[string]chan struct{}{"iso": hold}}})
	waitStatus(t, sys, map[string]messages.Status{"web": messages.StatusStarted, "db": messages.StatusStarted})
	for range panicBudget + 1 {
		sys.injectPanic(t, poolActorName("iso"))
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the last panic stops it
	close(hold)
	waitEvents(t, e, "teardown iso", 1, 5*time.Second)
	ev := e.Events()
	if s, td := index(ev, "setup iso peers=pvbr0"), index(ev, "teardown iso"); s < 0 || td < s {
		t.Errorf("iso set up at %d, torn down at %d: %v", s, td, ev)
	}
}

// A non-reboot update adding a container whose static address a kept
// container holds as its dynamic lease failed: the kept lease won and the
// new container never started ("held by d0"). Such an update reboots now,
// where static addresses are reserved before any dynamic request.
func TestStaticAddressHeldByAKeptDynamicLeaseReboots(t *testing.T) {
	u := newFakeUpdates("1")
	rig := startUpdateRig(t, Config{State: pooledUpdateState(t, map[string]string{"d0": ""})}, u)
	cs := waitStatus(t, rig.sys, map[string]messages.Status{"d0": messages.StatusStarted})
	if cs[0].IPv4Address != "10.0.5.2/29" {
		t.Fatalf("d0 got %s", cs[0].IPv4Address)
	}
	u.states["locals/b"] = pooledUpdateState(t, map[string]string{"d0": "", "new": "10.0.5.2"})
	if err := rig.sys.RunRevision("locals/b", false); err != nil {
		t.Fatal(err)
	}
	if why := rig.waitReboot(t); !strings.Contains(why, "locals/b") {
		t.Errorf("reboot %q", why)
	}
}

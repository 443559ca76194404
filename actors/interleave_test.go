package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
	"github.com/pantavisor/pv/update"
)

// A container is driven through random interleavings of what can reach
// its actor: API starts, stops and restarts, exits of its run, Go panics
// of its actor, and slow starts and teardowns. Whatever the order:
//   - no mount or run of it begins while another lives (the fake engine
//     records every overlap and startSystemCfg fails the test on one);
//   - every API action is answered;
//   - afterwards an API start brings it up (nothing is stuck);
//   - the shutdown ends, with every mount unmounted and every run
//     destroyed.
//
// The seed is logged; PV_INTERLEAVE_SEED replays one.
func TestContainerInterleavings(t *testing.T) {
	runSeeds(t, 6, interleave)
}

func interleave(t *testing.T, rng *rand.Rand) {
	policies := []map[string]any{
		{"policy": "always", "retry_delay": 0},
		{"policy": "on-failure", "retry_delay": 0, "max_retries": 2},
		{"policy": "no"},
	}
	policy := policies[rng.IntN(len(policies))]
	t.Logf("auto_recovery %v", policy)
	e := newFakeEngine()
	sys := startSystemCfg(t, Config{State: oneContainer(t, map[string]any{"auto_recovery": policy}), Engine: e,
		Log: failureLog(t)})
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})

	calls := &apiCalls{sys: sys}
	var did []string
	delays := []time.Duration{0, 0, 20 * time.Millisecond, 100 * time.Millisecond}
	panics := map[string]int{}
	for range 40 {
		switch k := rng.IntN(9); k {
		case 0, 1, 2, 3, 4:
			churn(rng, calls, e, "app", k*4/5, &did) // 3 of 5 actions, 2 exits
		case 5:
			if rng.IntN(4) > 0 {
				panicChild(sys, "0", "app", panics, &did)
			} else if panics["revision"] < 2 {
				// Within root's budget for the revision (3 a minute).
				// A nil status change: the revision actor
				// dereferences it and panics.
				panics["revision"]++
				sys.sys.Root.Send(actor.NewPID(sys.sys.Address(), rootName+"/"+revisionActorName("0")), (*messages.ContainerStatusChanged)(nil))
				did = append(did, "panic revision")
			}
		case 6:
			e.mu.Lock()
			e.startDly["app"] = delays[rng.IntN(len(delays))]
			e.slowDestroy["app"] = delays[rng.IntN(len(delays))]
			e.mu.Unlock()
		case 7:
			pause(rng)
		case 8:
			f := []string{"", "", "mount", "start"}[rng.IntN(4)]
			e.mu.Lock()
			e.failOn["app"] = f
			e.mu.Unlock()
			did = append(did, "fail on "+f)
		}
	}
	calls.wait(t, e, did)

	e.mu.Lock()
	e.startDly["app"], e.slowDestroy["app"], e.failOn["app"] = 0, 0, ""
	e.mu.Unlock()
	settled(t, sys, e, did)

	// Nothing is stuck: a start brings the container up, once whatever
	// is under way has settled (a start is refused while the row is in
	// a transition).
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := sys.ContainerAction("app", "start")
		if err == nil && info(t, sys, "app").Status == messages.StatusStarted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("app cannot be started after %v: %v, %+v; engine %v", did, err, info(t, sys, "app"), e.Events())
		}
		time.Sleep(20 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sys.Shutdown(ctx, "test"); err != nil {
		t.Fatalf("shutdown after %v: %v; engine %v", did, err, e.Events())
	}
	e.mu.Lock()
	mounted, alive := e.mounted["app"], e.alive["app"]
	e.mu.Unlock()
	if mounted != 0 || alive != 0 {
		t.Errorf("after the shutdown: %d mounts and %d runs of app left, after %v; engine %v", mounted, alive, did, e.Events())
	}
}

// settled waits until app's row is out of its transitions, then checks
// that the row, the container actor's own status and the engine agree:
// STARTED with the engine's one live run and mount, STOPPED or FAILED
// with none.
func settled(t *testing.T, sys *System, e *fakeEngine, did []string) {
	t.Helper()
	var row messages.ContainerInfo
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		row = info(t, sys, "app")
		if s := row.Status; s == messages.StatusStarted || s == messages.StatusStopped || s == messages.StatusFailed {
			time.Sleep(100 * time.Millisecond) // a status still on its way
			again := info(t, sys, "app")
			if again.Status == s && again.Pid == row.Pid {
				break
			}
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("app still %s 10s after %v; engine %v", row.Status, did, e.Events())
		}
	}
	var own string
	for _, rev := range sys.Tree().Children {
		for _, n := range rev.Children {
			if n.Path == rev.Path+"/app" {
				own = n.Status
			}
		}
	}
	e.mu.Lock()
	alive, mounted := e.alive["app"], e.mounted["app"]
	e.mu.Unlock()
	want := 0
	if row.Status == messages.StatusStarted {
		want = 1
	}
	if own != string(row.Status) || alive != want || mounted != want {
		t.Errorf("settled after %v: row %s, actor %s, %d runs and %d mounts alive; engine %v", did, row.Status, own, alive, mounted, e.Events())
	}
	if r := e.run("app"); want == 1 && (r == nil || r.Pid() != row.Pid) {
		t.Errorf("settled after %v: row STARTED with pid %d, not the engine's live run", did, row.Pid)
	}
}

// Non-reboot updates are interleaved with the churn of
// TestContainerInterleavings: each update changes app and keeps other,
// which is handed over running. Whatever the order, no mount or run of a
// container overlaps another (across revisions too: one engine serves
// them all), every API action is answered, and once all is settled every
// container is up, each with one run and one mount, in the revision last
// run.
func TestUpdateInterleavings(t *testing.T) {
	runSeeds(t, 4, interleaveUpdates)
}

func interleaveUpdates(t *testing.T, rng *rand.Rand) {
	always := map[string]any{"auto_recovery": map[string]any{"policy": "always", "retry_delay": 0}}
	stateOf := func(appExec string) *state.State {
		doc := appDoc("/sbin/init", appExec, always)
		doc["other/run.json"] = map[string]any{"name": "other", "group": "apps", "auto_recovery": always["auto_recovery"]}
		return parseState(t, doc)
	}
	u := newFakeUpdates("1")
	rig := startUpdateRig(t, Config{State: stateOf("/bin/a0"),
		Log: failureLog(t)}, u)
	waitStatus(t, rig.sys, allStarted)
	e := rig.e

	calls := &apiCalls{sys: rig.sys}
	var did []string
	updates, panics := 0, map[string]int{}
	running := "1"
	for range 40 {
		name := []string{"app", "other"}[rng.IntN(2)]
		switch k := rng.IntN(8); k {
		case 0, 1, 2, 3:
			churn(rng, calls, e, name, k, &did)
		case 4:
			rev := fmt.Sprintf("locals/u%d", updates+1)
			u.mu.Lock()
			u.states[rev] = stateOf("/bin/a" + strconv.Itoa(updates+1))
			u.mu.Unlock()
			if err := rig.sys.RunRevision(rev, false); err == nil {
				updates++
				running = rev
				did = append(did, "update "+rev)
			} else if !errors.Is(err, update.ErrUpdateOngoing) {
				t.Fatalf("run %s: %v", rev, err)
			}
		case 5:
			if rng.IntN(4) > 0 {
				panicChild(rig.sys, running, name, panics, &did)
			} else if panics[running+"/revision"] < 2 {
				// Within root's budget for a revision.
				panics[running+"/revision"]++
				rig.sys.sys.Root.Send(actor.NewPID(rig.sys.sys.Address(), rootName+"/"+revisionActorName(running)),
					(*messages.ContainerStatusChanged)(nil))
				did = append(did, "panic revision")
			}
		case 6:
			d := []time.Duration{0, 0, 20 * time.Millisecond, 100 * time.Millisecond}
			e.mu.Lock()
			e.startDly[name] = d[rng.IntN(len(d))]
			e.slowDestroy[name] = d[rng.IntN(len(d))]
			e.mu.Unlock()
		case 7:
			pause(rng)
		}
	}
	calls.wait(t, e, did)
	e.mu.Lock()
	clear(e.startDly)
	clear(e.slowDestroy)
	e.mu.Unlock()
	// Stopped ones are started again (a container stopped through the
	// API stays down, across updates too); then all must be up,
	// each once, and the last update finished.
	steadilyUp(t, rig.sys, map[string]messages.Status{"app": messages.StatusStarted, "other": messages.StatusStarted}, did)
	if updates > 0 {
		u.waitStatus(t, running, storage.StatusUpdated)
	}
	time.Sleep(100 * time.Millisecond)
	e.mu.Lock()
	for _, name := range []string{"sys", "app", "other"} {
		if e.alive[name] != 1 || e.mounted[name] != 1 {
			t.Errorf("settled after %v: %s has %d runs and %d mounts alive, want 1 and 1", did, name, e.alive[name], e.mounted[name])
		}
	}
	e.mu.Unlock()
	if revs, err := rig.sys.Revisions(); err != nil || revs.Running != running {
		t.Errorf("revisions %+v, %v; want %s running", revs, err, running)
	}
}

// apiCalls makes container actions in the background, as clients of the
// control socket do, each answered in its own time.
type apiCalls struct {
	sys    *System
	wg     sync.WaitGroup
	mu     sync.Mutex
	left   map[int]string // unanswered, by the number of the test's step
	failed []string
}

// do asks action of container name, as step n of the test.
func (c *apiCalls) do(name, action string, n int) {
	what := action + " " + name
	c.mu.Lock()
	if c.left == nil {
		c.left = map[int]string{}
	}
	c.left[n] = what
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		err := c.sys.ContainerAction(name, action)
		var refused *messages.ActionError
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.left, n)
		if err != nil && !errors.As(err, &refused) {
			c.failed = append(c.failed, fmt.Sprintf("#%d %s: %v", n, what, err))
		}
	}()
}

// wait logs the test's steps (did), and fails t unless every action was
// answered within 30s, with an outcome (a refusal is one).
func (c *apiCalls) wait(t *testing.T, e *fakeEngine, did []string) {
	t.Helper()
	t.Logf("did %v", did)
	answered := make(chan struct{})
	go func() { c.wg.Wait(); close(answered) }()
	select {
	case <-answered:
	case <-time.After(30 * time.Second):
		c.mu.Lock()
		left := fmt.Sprint(c.left)
		c.mu.Unlock()
		t.Fatalf("API actions still unanswered after 30s: %s; engine %v", left, e.Events())
	}
	for _, f := range c.failed {
		t.Errorf("API action failed: %s", f)
	}
}

// A link's ends churn at random (API actions on its consumer and
// provider, their exits and actor panics, panics of the link actor, slow
// and failing establishes). Whatever the order, once both ends are up
// again the link has exactly one setup open, made for the consumer's
// current run, and none is left after the shutdown: no setup leaks, and
// none is missing.
func TestLinkInterleavings(t *testing.T) {
	runSeeds(t, 4, interleaveLinks)
}

func interleaveLinks(t *testing.T, rng *rand.Rand) {
	doc := meshState(t)
	for _, f := range []string{"nm/run.json", "app/run.json"} {
		doc[f].(map[string]any)["auto_recovery"] = map[string]any{"policy": "always", "retry_delay": 0}
	}
	e, p := newFakeEngine(), &fakePlane{}
	sys := startSystemCfg(t, Config{State: parseState(t, doc), Engine: e, Links: p,
		Log: failureLog(t)})
	both := map[string]messages.Status{"nm": messages.StatusStarted, "app": messages.StatusStarted}
	waitStatus(t, sys, both)

	calls := &apiCalls{sys: sys}
	var did []string
	panics := map[string]int{}
	for range 40 {
		name := []string{"app", "nm"}[rng.IntN(2)]
		switch k := rng.IntN(8); k {
		case 0, 1, 2, 3:
			churn(rng, calls, e, name, k, &did)
		case 4:
			if rng.IntN(2) == 0 {
				name = "link:app:bus"
			}
			panicChild(sys, "0", name, panics, &did)
		case 5:
			p.mu.Lock()
			p.delay = []time.Duration{0, 0, 20 * time.Millisecond, 100 * time.Millisecond}[rng.IntN(4)]
			p.failures = rng.IntN(2)
			p.mu.Unlock()
		case 6, 7:
			pause(rng)
		}
	}
	calls.wait(t, e, did)
	p.mu.Lock()
	p.delay, p.failures = 0, 0
	p.mu.Unlock()

	steadilyUp(t, sys, both, did)
	app := info(t, sys, "app").Pid
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		live := p.liveSetups("app/bus")
		if slices.Equal(live, []int{app}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: setups of app/bus open for consumer pids %v; want one, for %d: %v", did, live, app, p.Events())
		}
	}
	shutdown(t, sys, did)
	// A setup under way when its link stopped closes itself when it is
	// done, after the shutdown maybe.
	for deadline := time.Now().Add(5 * time.Second); len(p.liveSetups("app/bus")) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the shutdown: setups of app/bus open for consumer pids %v: %v", p.liveSetups("app/bus"), p.Events())
		}
	}
}

// pidsOf is the pids of cs, in order.
func pidsOf(cs []messages.ContainerInfo) []int {
	out := make([]int, len(cs))
	for i, c := range cs {
		out[i] = c.Pid
	}
	return out
}

// runSeeds runs f as n subtests, each with a random source seeded from
// the clock and named by its seed, which it logs; PV_INTERLEAVE_SEED runs
// the one seed it names instead.
func runSeeds(t *testing.T, n int, f func(*testing.T, *rand.Rand)) {
	first := uint64(time.Now().UnixNano())
	if s := os.Getenv("PV_INTERLEAVE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PV_INTERLEAVE_SEED: %v", err)
		}
		first, n = v, 1
	}
	for i := range uint64(n) {
		seed := first + i
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			t.Logf("seed %d (PV_INTERLEAVE_SEED replays it)", seed)
			f(t, rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)))
		})
	}
}

// churn is a step the interleavings share: an API action on container
// name (k 0 or 1) or an exit of its run (k 2 or 3).
func churn(rng *rand.Rand, calls *apiCalls, e *fakeEngine, name string, k int, did *[]string) {
	if k < 2 {
		a := []string{"start", "stop", "restart"}[rng.IntN(3)]
		calls.do(name, a, len(*did))
		*did = append(*did, a+" "+name)
		return
	}
	if r := e.run(name); r != nil {
		r.Exit(rng.IntN(2), 0)
		*did = append(*did, "exit "+name)
	}
}

// The containers of an IPAM pool churn at random (API actions, exits,
// panics of their actors and of the pool's, slow starts). Whatever the
// order, once they are steadily up again each has its own address, the
// one it had at first (leases are sticky; db's is static), the pool's
// bridge is set up once, and the shutdown tears it down.
func TestPoolInterleavings(t *testing.T) {
	runSeeds(t, 4, interleavePools)
}

func interleavePools(t *testing.T, rng *rand.Rand) {
	e := newFakeEngine()
	sys := startSystemCfg(t, Config{State: pooledState(t), Engine: e, PoolNet: &fakePoolNet{e: e},
		Log: failureLog(t)})
	both := map[string]messages.Status{"web": messages.StatusStarted, "db": messages.StatusStarted}
	first := map[string]string{}
	for _, c := range waitStatus(t, sys, both) {
		first[c.Name] = c.IPv4Address
	}

	calls := &apiCalls{sys: sys}
	var did []string
	panics := map[string]int{}
	for range 40 {
		name := []string{"web", "db"}[rng.IntN(2)]
		switch k := rng.IntN(8); k {
		case 0, 1, 2, 3:
			churn(rng, calls, e, name, k, &did)
		case 4:
			if rng.IntN(2) == 0 {
				name = "pool:lan"
			}
			panicChild(sys, "0", name, panics, &did)
		case 5:
			e.mu.Lock()
			e.startDly[name] = []time.Duration{0, 0, 20 * time.Millisecond, 100 * time.Millisecond}[rng.IntN(4)]
			e.mu.Unlock()
		case 6, 7:
			pause(rng)
		}
	}
	calls.wait(t, e, did)
	e.mu.Lock()
	clear(e.startDly)
	e.mu.Unlock()

	cs := steadilyUp(t, sys, both, did)
	for _, c := range cs {
		if want, ok := first[c.Name]; ok && c.IPv4Address != want {
			t.Errorf("after %v: %s has address %q, had %q", did, c.Name, c.IPv4Address, want)
		}
	}
	if first["web"] == first["db"] {
		t.Errorf("web and db share the address %s", first["web"])
	}
	if n := setUp(e, "lan"); n != 1 {
		t.Errorf("after %v: lan set up %d times more than torn down, want 1: %v", did, n, e.Events())
	}
	shutdown(t, sys, did)
	if n := setUp(e, "lan"); n != 0 {
		t.Errorf("after the shutdown: lan set up %d times more than torn down: %v", n, e.Events())
	}
}

// setUp is how many more times pool was set up than torn down.
func setUp(e *fakeEngine, pool string) int {
	n := 0
	for _, ev := range e.Events() {
		switch {
		case strings.HasPrefix(ev, "setup "+pool+" "):
			n++
		case ev == "teardown "+pool:
			n--
		}
	}
	return n
}

// steadilyUp starts the containers of want until each is STARTED, with
// the same pids 100 ms later (a stop through the API is answered before
// the container is down), and returns them.
func steadilyUp(t *testing.T, sys *System, want map[string]messages.Status, did []string) []messages.ContainerInfo {
	t.Helper()
	up := func() ([]messages.ContainerInfo, bool) {
		cs, err := sys.Containers()
		ok := err == nil
		for _, c := range cs {
			ok = ok && (c.Status == messages.StatusStarted || want[c.Name] == "")
		}
		return cs, ok
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		errs := map[string]error{}
		for name := range want {
			errs[name] = sys.ContainerAction(name, "start")
		}
		time.Sleep(100 * time.Millisecond)
		cs, ok := up()
		if ok {
			time.Sleep(100 * time.Millisecond)
			if again, ok := up(); ok && slices.Equal(pidsOf(cs), pidsOf(again)) {
				return again
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not steadily up after %v: %+v; last starts: %v", did, cs, errs)
		}
	}
}

// failureLog is a logger for a test's System, whose output the test
// prints if it fails. Its cleanup is registered before the System's, so
// it runs after it: that shuts down and checks for overlaps.
func failureLog(t *testing.T) *slog.Logger {
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	})
	return slog.New(slog.NewTextHandler(logs, nil))
}

// panicChild makes child name of revision rev panic, within its panic
// budget there (panics counts them): past it, the revision stops the
// actor for good, which the interleavings do not test.
func panicChild(sys *System, rev, name string, panics map[string]int, did *[]string) {
	key := rev + "/" + name
	if panics[key] >= panicBudget-1 {
		return
	}
	panics[key]++
	sys.sys.Root.Send(actor.NewPID(sys.sys.Address(), rootName+"/"+revisionActorName(rev)+"/"+name),
		&injectedPanic{reason: "injected by the test"})
	*did = append(*did, "panic "+name)
}

// The provider of two ingress listeners (one http address with two
// prefixes, one tcp) churns at random, with panics of its actor and of
// the ingress actors and failing binds. Whatever the order, once it is
// steadily up again each address has one listener open, whose backends
// point at the provider's current run, and the shutdown closes both.
func TestIngressInterleavings(t *testing.T) {
	runSeeds(t, 4, interleaveIngress)
}

func interleaveIngress(t *testing.T, rng *rand.Rand) {
	doc := ingressState(t)
	doc["nm/run.json"].(map[string]any)["auto_recovery"] = map[string]any{"policy": "always", "retry_delay": 0}
	e, p := newFakeEngine(), &fakeIngress{bindFail: map[string]int{}}
	sys := startSystemCfg(t, Config{State: parseState(t, doc), Engine: e, Ingress: p, Log: failureLog(t)})
	nmUp := map[string]messages.Status{"nm": messages.StatusStarted}
	waitStatus(t, sys, nmUp)
	addrs := []string{"0.0.0.0:80", "127.0.0.1:2222"}

	calls := &apiCalls{sys: sys}
	var did []string
	panics := map[string]int{}
	for range 40 {
		switch k := rng.IntN(8); k {
		case 0, 1, 2, 3:
			churn(rng, calls, e, "nm", k, &did)
		case 4:
			name := []string{"nm", "ingress:" + addrs[0], "ingress:" + addrs[1]}[rng.IntN(3)]
			panicChild(sys, "0", name, panics, &did)
		case 5:
			a := addrs[rng.IntN(2)]
			p.mu.Lock()
			p.bindFail[a] = rng.IntN(2)
			p.mu.Unlock()
		case 6, 7:
			pause(rng)
		}
	}
	calls.wait(t, e, did)
	p.mu.Lock()
	clear(p.bindFail)
	p.mu.Unlock()

	steadilyUp(t, sys, nmUp, did)
	nm := info(t, sys, "nm").Pid
	backends := map[string]int{addrs[0] + " 0": 0, addrs[0] + " 1": 0, addrs[1] + " 0": 0}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ev := p.Events()
		ok := true
		for _, a := range addrs {
			ok = ok && listening(ev, a) == 1
		}
		for b := range backends {
			backends[b] = lastBackend(ev, b)
			ok = ok && backends[b] == nm
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: listeners open %d and %d, backends %v; want 1, 1 and all at %d: %v",
				did, listening(ev, addrs[0]), listening(ev, addrs[1]), backends, nm, ev)
		}
	}
	shutdown(t, sys, did)
	for deadline := time.Now().Add(5 * time.Second); listening(p.Events(), addrs[0])+listening(p.Events(), addrs[1]) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the shutdown: listeners still open: %v", p.Events())
		}
	}
}

// listening is how many more listeners of addr the fake ingress plane
// opened than it closed.
func listening(events []string, addr string) int {
	n := 0
	for _, ev := range events {
		f := strings.Fields(ev)
		switch {
		case len(f) >= 3 && f[0] == "listen" && f[2] == addr:
			n++
		case len(f) == 2 && f[0] == "close" && f[1] == addr:
			n--
		}
	}
	return n
}

// lastBackend is the provider pid the last "backend <addr> <rule>" event
// named (b is "<addr> <rule>"), -1 if none.
func lastBackend(events []string, b string) int {
	pid := -1
	for _, ev := range events {
		if rest, ok := strings.CutPrefix(ev, "backend "+b+" p="); ok {
			pid, _ = strconv.Atoi(rest)
		}
	}
	return pid
}

// pause is a step the interleavings share: up to 50 ms of nothing.
func pause(rng *rand.Rand) { time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond) }

// shutdown shuts sys down, within 20 s, after the test's steps (did).
func shutdown(t *testing.T, sys *System, did []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sys.Shutdown(ctx, "test"); err != nil {
		t.Fatalf("shutdown after %v: %v", did, err)
	}
}

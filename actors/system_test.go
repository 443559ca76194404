package actors

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/internal/revtest"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
)

// threeGroups: 3 groups, 6 containers. g1 waits for READY (with a short
// timeout on "slow"), g2 starts after g1, g3 after g2.
func threeGroups(t *testing.T, timeout int) *state.State {
	t.Helper()
	doc := map[string]any{
		"#spec": state.SpecSystem1,
		"device.json": map[string]any{"groups": []any{
			map[string]any{"name": "g1", "status_goal": "READY", "timeout": timeout},
			map[string]any{"name": "g2", "status_goal": "STARTED", "timeout": 30},
			map[string]any{"name": "g3", "status_goal": "STARTED", "timeout": 30, "restart_policy": "container"},
		}},
	}
	for name, group := range map[string]string{"a1": "g1", "a2": "g1", "b1": "g2", "b2": "g2", "c1": "g3", "c2": "g3"} {
		doc[name+"/run.json"] = map[string]any{"name": name, "group": group, "auto_recovery": map[string]any{"policy": "no"}}
	}
	return parseState(t, doc)
}

// parseState is the revision doc describes, as appengine parses it.
func parseState(t *testing.T, doc map[string]any) *state.State {
	t.Helper()
	data, err := json.Marshal(revtest.WithRootVolumes(doc))
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Parse(data, state.Options{AppEngine: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func startSystem(t *testing.T, st *state.State, e Engine) *System {
	t.Helper()
	return startSystemCfg(t, Config{State: st, Engine: e})
}

func startSystemCfg(t *testing.T, cfg Config) *System {
	t.Helper()
	if cfg.Rev == "" {
		cfg.Rev = "0"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	sys, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = sys.Shutdown(ctx, "test end")
		if e, ok := cfg.Engine.(*fakeEngine); ok {
			for _, o := range e.Overlaps() {
				t.Errorf("overlap: %s", o)
			}
		}
	})
	return sys
}

func waitStatus(t *testing.T, sys *System, want map[string]messages.Status) []messages.ContainerInfo {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		cs, err := sys.Containers()
		if err == nil {
			ok := true
			for _, c := range cs {
				if w, in := want[c.Name]; in && c.Status != w {
					ok = false
				}
			}
			if ok {
				return cs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timeout waiting for %v; have %+v", want, cs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func index(events []string, ev string) int {
	for i, e := range events {
		if e == ev {
			return i
		}
	}
	return -1
}

func TestGroupsStartInOrder(t *testing.T) {
	e := newFakeEngine()
	sys := startSystem(t, threeGroups(t, 30), e)
	waitStatus(t, sys, map[string]messages.Status{
		"a1": messages.StatusStarted, "a2": messages.StatusStarted,
		"b1": messages.StatusBlocked, "c1": messages.StatusBlocked,
	})
	time.Sleep(50 * time.Millisecond)
	if ev := e.Events(); index(ev, "start b1") >= 0 {
		t.Fatalf("g2 started before g1 was READY: %v", ev)
	}
	if g, _ := sys.Groups(); g[0].Status != messages.StatusStarted || g[1].Status != messages.StatusBlocked {
		t.Errorf("groups: %+v", g)
	}
	for _, name := range []string{"a1", "a2"} {
		if err := sys.Signal(name, "ready", ""); err != nil {
			t.Fatalf("signal %s: %v", name, err)
		}
	}
	waitStatus(t, sys, map[string]messages.Status{
		"a1": messages.StatusReady, "a2": messages.StatusReady,
		"b1": messages.StatusStarted, "b2": messages.StatusStarted,
		"c1": messages.StatusStarted, "c2": messages.StatusStarted,
	})
	ev := e.Events()
	for _, g2 := range []string{"start b1", "start b2"} {
		for _, g1 := range []string{"start a1", "start a2"} {
			if index(ev, g1) > index(ev, g2) {
				t.Errorf("%s after %s: %v", g1, g2, ev)
			}
		}
		for _, g3 := range []string{"start c1", "start c2"} {
			if index(ev, g2) > index(ev, g3) {
				t.Errorf("%s after %s: %v", g2, g3, ev)
			}
		}
	}
	if err := sys.Signal("b1", "ready", ""); err == nil {
		t.Error("READY accepted from a container whose goal is STARTED")
	}
}

func TestContainersOfAGroupStartConcurrently(t *testing.T) {
	e := newFakeEngine()
	e.startDly["a1"], e.startDly["a2"] = 300*time.Millisecond, 300*time.Millisecond
	start := time.Now()
	sys := startSystem(t, threeGroups(t, 30), e)
	waitStatus(t, sys, map[string]messages.Status{"a1": messages.StatusStarted, "a2": messages.StatusStarted})
	if d := time.Since(start); d > 550*time.Millisecond {
		t.Errorf("two 300 ms starts took %v: not concurrent", d)
	}
}

func TestGroupTimeoutLetsNextGroupStart(t *testing.T) {
	e := newFakeEngine()
	sys := startSystem(t, threeGroups(t, 1), e) // g1 wants READY, nobody signals
	start := time.Now()
	waitStatus(t, sys, map[string]messages.Status{"b1": messages.StatusStarted, "c2": messages.StatusStarted})
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("g2 started after %v, before g1's 1 s timeout", d)
	}
}

// A group with no timeout of its own takes PV_UPDATER_GOALS_TIMEOUT as it
// is when the group starts (Tunables): user-meta or the revision's OEM
// configuration may have changed it since the state was parsed (with
// the default 120 s here).
func TestGroupTimeoutReadWhenTheGroupStarts(t *testing.T) {
	st := parseState(t, map[string]any{
		"#spec": state.SpecSystem1,
		"device.json": map[string]any{"groups": []any{
			map[string]any{"name": "g1", "status_goal": "READY"},
			map[string]any{"name": "g2", "status_goal": "STARTED", "timeout": 30},
		}},
		"a/run.json": map[string]any{"name": "a", "group": "g1", "auto_recovery": map[string]any{"policy": "no"}},
		"b/run.json": map[string]any{"name": "b", "group": "g2", "auto_recovery": map[string]any{"policy": "no"}},
	})
	if g := st.Group("g1"); g.Timeout != state.DefaultGroupTimeout || !g.TimeoutUnset {
		t.Fatalf("g1 %+v: want the default timeout, marked as not its own", g)
	}
	sys := startSystemCfg(t, Config{State: st, Engine: newFakeEngine(),
		Tunables: func() Tunables { return Tunables{GroupTimeout: 300 * time.Millisecond} }})
	// g1 wants READY and nobody signals: g2 starts at g1's timeout, the
	// configuration's 300 ms, not the 120 s the state was parsed with.
	waitStatus(t, sys, map[string]messages.Status{"b": messages.StatusStarted})
}

func TestExitCodesAndShutdownOrder(t *testing.T) {
	e := newFakeEngine()
	sys := startSystem(t, threeGroups(t, 1), e)
	waitStatus(t, sys, map[string]messages.Status{"c1": messages.StatusStarted, "c2": messages.StatusStarted})
	e.run("c1").Exit(7, 0)
	e.run("b2").Exit(0, 9)
	cs := waitStatus(t, sys, map[string]messages.Status{"c1": messages.StatusFailed, "b2": messages.StatusFailed})
	for _, c := range cs {
		switch c.Name {
		case "c1":
			if c.LastExit == nil || c.LastExit.Code != 7 || c.LastExit.Signal != 0 {
				t.Errorf("c1 exit: %+v", c.LastExit)
			}
		case "b2":
			if c.LastExit == nil || c.LastExit.Signal != 9 {
				t.Errorf("b2 exit: %+v", c.LastExit)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sys.Shutdown(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	ev := e.Events()
	last := func(prefix string) int {
		n := -1
		for i, x := range ev {
			if strings.HasPrefix(x, prefix) {
				n = i
			}
		}
		return n
	}
	first := func(prefix string) int {
		for i, x := range ev {
			if strings.HasPrefix(x, prefix) {
				return i
			}
		}
		return -1
	}
	for _, pair := range [][2]string{{"c2", "b1"}, {"b1", "a1"}, {"c2", "a2"}} {
		if last("unmount "+pair[0]) > first("stop "+pair[1]) {
			t.Errorf("%s not fully down before %s stopped: %v", pair[0], pair[1], ev)
		}
	}
	if first("stop a1") < 0 || first("unmount a1") < 0 {
		t.Errorf("a1 never stopped: %v", ev)
	}
}

func TestStartFailureIsReported(t *testing.T) {
	e := newFakeEngine()
	e.failOn["a1"] = "start"
	e.failOn["a2"] = "mount"
	sys := startSystem(t, threeGroups(t, 30), e)
	cs := waitStatus(t, sys, map[string]messages.Status{"a1": messages.StatusFailed, "a2": messages.StatusFailed})
	for _, c := range cs {
		if (c.Name == "a1" && !strings.Contains(c.Error, "exec /sbin/init")) || (c.Name == "a2" && !strings.Contains(c.Error, "mount squashfs")) {
			t.Errorf("%s error: %q", c.Name, c.Error)
		}
	}
}

func TestTreeDescribesEveryActor(t *testing.T) {
	sys := startSystem(t, threeGroups(t, 30), newFakeEngine())
	waitStatus(t, sys, map[string]messages.Status{"a1": messages.StatusStarted})
	tree := sys.Tree()
	if tree.Kind != "root" || len(tree.Children) != 1 || tree.Children[0].Kind != "revision" {
		t.Fatalf("tree: %+v", tree)
	}
	rev := tree.Children[0]
	if len(rev.Children) != 6 || rev.Children[0].Path != "root/rev-0/a1" || rev.Children[0].Info["pid"] == "" {
		b, _ := json.Marshal(rev)
		t.Fatalf("revision children: %s", b)
	}
}

// A container that failed is torn down in the background; a shutdown right
// after must wait for that teardown instead of reporting it stopped.
func TestShutdownWaitsForRelease(t *testing.T) {
	e := newFakeEngine()
	e.slowDestroy["c1"] = 300 * time.Millisecond
	sys := startSystem(t, threeGroups(t, 1), e)
	waitStatus(t, sys, map[string]messages.Status{"c1": messages.StatusStarted})
	e.run("c1").Exit(3, 0)
	waitStatus(t, sys, map[string]messages.Status{"c1": messages.StatusFailed})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sys.Shutdown(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	if ev := e.Events(); index(ev, "unmount c1") < 0 {
		t.Fatalf("shutdown finished before c1 was released: %v", ev)
	}
}

// The boot is reported once, when every container reached its goal or its
// group timed out, naming those that missed it; GET /actors shows it.
func TestRevisionBootedOnce(t *testing.T) {
	type boot struct {
		took   time.Duration
		missed []string
	}
	boots := make(chan boot, 4)
	e := newFakeEngine()
	sys := startSystemCfg(t, Config{State: threeGroups(t, 1), Engine: e, OnBooted: func(took time.Duration, missed []string) {
		boots <- boot{took, missed}
	}})
	// a1 signals READY, a2 never does: g1 times out after 1 s, then g2
	// and g3 start; the boot is over once they are STARTED.
	waitStatus(t, sys, map[string]messages.Status{"a1": messages.StatusStarted, "a2": messages.StatusStarted})
	signalThenNoBoot := func(name string, wait time.Duration, why string) {
		t.Helper()
		if err := sys.Signal(name, "ready", ""); err != nil {
			t.Fatal(err)
		}
		select {
		case b := <-boots:
			t.Errorf("%s: %+v", why, b)
		case <-time.After(wait):
		}
	}
	signalThenNoBoot("a1", 500*time.Millisecond, "booted before g1 timed out")
	var b boot
	select {
	case b = <-boots:
	case <-time.After(5 * time.Second):
		t.Fatal("no boot report")
	}
	if strings.Join(b.missed, ",") != "a2" || b.took < time.Second {
		t.Errorf("boot = %+v, want a2 missed after >= 1 s", b)
	}
	cs := waitStatus(t, sys, map[string]messages.Status{"c1": messages.StatusStarted, "c2": messages.StatusStarted})
	for _, c := range cs {
		if c.Name != "a2" && c.Status != messages.StatusStarted && c.Status != messages.StatusReady {
			t.Errorf("%s is %s at boot report", c.Name, c.Status)
		}
	}
	// Later changes (a late READY, a restart) do not report again.
	signalThenNoBoot("a2", 200*time.Millisecond, "second boot report")
	if tree := sys.Tree(); tree.Info["boot_missed"] != "a2" || tree.Info["booted_in"] == "" {
		t.Errorf("root info = %v", tree.Info)
	}
}

// Each way a signal can be refused is told apart: upstream answers all of
// them alike, so the reason in the log is all an operator has.
func TestSignalRefusalsSayWhy(t *testing.T) {
	e := newFakeEngine()
	e.startDly["a1"] = time.Second // STARTING while the signals are sent
	sys := startSystem(t, threeGroups(t, 30), e)
	waitStatus(t, sys, map[string]messages.Status{"a1": messages.StatusStarting, "a2": messages.StatusStarted})
	tests := []struct {
		name, container, typ string
		want                 messages.SignalRefusal
	}{
		{"unknown type", "a2", "alive", messages.SignalUnknownType},
		{"goal not READY", "b1", "ready", messages.SignalGoalNotReady},
		{"not started yet", "a1", "ready", messages.SignalWrongStatus},
		{"no such container", "zz", "ready", messages.SignalNoContainer},
	}
	seen := map[string]string{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := sys.Signal(tc.container, tc.typ, "")
			var se *messages.SignalError
			if !errors.As(err, &se) || se.Refusal != tc.want {
				t.Fatalf("got %v, want refusal %q", err, tc.want)
			}
			if other, dup := seen[err.Error()]; dup {
				t.Errorf("%q says the same as %q: %v", tc.name, other, err)
			}
			seen[err.Error()] = tc.name
		})
	}
	if err := sys.Signal("a2", "ready", ""); err != nil {
		t.Errorf("ready from a STARTED container whose goal is READY: %v", err)
	}
}

// The watchdog's probe asks the revision actor too: hung, it supervises
// nothing (no restart, no group started), while root, asked alone,
// answered for it and the watchdog went on being fed. A silence shorter
// than revisionGrace is not a hang (a restart after a panic waits for the
// containers to stop).
func TestAliveAsksTheRevisionActor(t *testing.T) {
	sys := startSystem(t, threeGroups(t, 30), newFakeEngine())
	sys.revisionGrace = 300 * time.Millisecond
	ctx := func() context.Context {
		c, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}
	if err := sys.Alive(ctx()); err != nil {
		t.Fatalf("alive: %v", err)
	}
	root := sys.Tree()
	if len(root.Children) != 1 || root.Children[0].Kind != "revision" {
		t.Fatalf("tree: %+v", root)
	}
	rev := actor.NewPID(sys.sys.Address(), root.Children[0].Path)
	release := make(chan struct{})
	sys.sys.Root.Send(rev, hang{until: release})
	errShort := sys.Alive(ctx())
	time.Sleep(sys.revisionGrace)
	errLong := sys.Alive(ctx())
	close(release)
	if errShort != nil {
		t.Errorf("alive with the revision actor silent for less than its grace: %v, want nil", errShort)
	}
	if errLong == nil || !strings.Contains(errLong.Error(), "revision actor") {
		t.Fatalf("alive with the revision actor hung beyond its grace: %v, want an error naming it", errLong)
	}
	if err := sys.Alive(ctx()); err != nil {
		t.Fatalf("alive once the revision actor answers again: %v", err)
	}
	// Answered: its silence starts afresh.
	again := make(chan struct{})
	sys.sys.Root.Send(rev, hang{until: again})
	err := sys.Alive(ctx())
	close(again)
	if err != nil {
		t.Errorf("a new silence taken for the old one: %v", err)
	}
}

// A Go panic in the revision actor is recovered by a restart (root's
// HandleFailure); the restart waits until its children have stopped, and
// a container actor stops its container synchronously (up to its stop
// grace). Meanwhile the revision's mailbox is suspended: the watchdog's
// probe must not take that for a hang, or the recovery becomes a
// hardware reset. (The review of 1685919 found it.)
func TestAliveDuringARevisionRestartAfterAPanic(t *testing.T) {
	e := newFakeEngine()
	e.slowDestroy["a1"] = 1500 * time.Millisecond
	sys := startSystem(t, threeGroups(t, 30), e)
	waitStatus(t, sys, map[string]messages.Status{"a1": messages.StatusStarted})
	root := sys.Tree()
	rev := actor.NewPID(sys.sys.Address(), root.Children[0].Path)
	// A nil status change: the revision actor dereferences it and panics.
	sys.sys.Root.Send(rev, (*messages.ContainerStatusChanged)(nil))
	time.Sleep(100 * time.Millisecond)
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := sys.Alive(ctx)
		cancel()
		if err != nil {
			t.Fatalf("alive while the revision actor restarts after a panic: %v", err)
		}
	}
	waitStatus(t, sys, map[string]messages.Status{"a1": messages.StatusStarted})
}

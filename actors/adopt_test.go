package actors

import (
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
)

// fakeAdopter hands over runs made by the fake engine, as if a previous
// supervisor had started them.
type fakeAdopter struct {
	e    *fakeEngine
	runs map[string]*fakeRun // nil entry: nothing left of it
}

func (a *fakeAdopter) AdoptPool(state.Pool, []string) (PoolSetup, error) { return nil, nil }

func (a *fakeAdopter) AdoptContainer(c *state.Container) (Mount, Run, *messages.Lease, error) {
	r := a.runs[c.Name]
	if r == nil {
		return nil, nil, nil, nil
	}
	a.e.mu.Lock()
	a.e.runs[c.Name] = r
	a.e.mu.Unlock()
	return &fakeMount{e: a.e, name: c.Name}, r, nil, nil
}

func adoptState(t *testing.T) *state.State {
	t.Helper()
	always := map[string]any{"policy": "always", "retry_delay": 0}
	return parseState(t, map[string]any{
		"#spec": state.SpecSystem1,
		"device.json": map[string]any{"groups": []any{
			map[string]any{"name": "g1", "status_goal": "READY", "timeout": 30},
			map[string]any{"name": "g2", "status_goal": "STARTED", "timeout": 30},
		}},
		"ready/run.json": map[string]any{"name": "ready", "group": "g1"},
		"gone/run.json":  map[string]any{"name": "gone", "group": "g2", "auto_recovery": always},
		"fresh/run.json": map[string]any{"name": "fresh", "group": "g2"},
	})
}

// A supervisor started again adopts the previous one's containers: a
// live one keeps its pid and its READY, nothing is started again but what
// was left of nothing, and an init that ended in the gap is recovered by
// its policy with the retries the books kept.
func TestAdoptTakesOverWithoutStarting(t *testing.T) {
	e := newFakeEngine()
	ready := &fakeRun{e: e, name: "ready", pid: 41, exit: make(chan messages.Exit, 1)}
	gone := &fakeRun{e: e, name: "gone", pid: 42, exit: make(chan messages.Exit, 1)}
	gone.Exit(7, 0) // in the gap
	sys, ad, books := adoptedSystem(t, e, map[string]*fakeRun{"ready": ready, "gone": gone},
		Books{"ready": {Ready: true}, "gone": {Retries: 2}})
	if !slices.Equal(ad.Fresh, []string{"fresh"}) {
		t.Errorf("fresh %v, want [fresh]", ad.Fresh)
	}
	cs := waitStatus(t, sys, map[string]messages.Status{"ready": messages.StatusReady, "fresh": messages.StatusStarted})
	for _, c := range cs {
		if c.Name == "ready" && c.Pid != 41 {
			t.Errorf("ready has pid %d, want 41", c.Pid)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for countEvents(e, "start gone") == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cs = waitStatus(t, sys, map[string]messages.Status{"gone": messages.StatusStarted})
	for _, c := range cs {
		if c.Name != "gone" {
			continue
		}
		if c.LastExit == nil || c.LastExit.Code != 7 {
			t.Errorf("gone's last exit %+v, want code 7", c.LastExit)
		}
		if c.AutoRecovery.CurrentRetries != 3 {
			t.Errorf("gone's retries %d, want 3 (2 kept + this one)", c.AutoRecovery.CurrentRetries)
		}
	}
	if n := countEvents(e, "start ready"); n != 0 {
		t.Errorf("ready started again: %v", e.Events())
	}
	if countEvents(e, "start fresh") != 1 || countEvents(e, "start gone") != 1 {
		t.Errorf("fresh and gone should start once each: %v", e.Events())
	}
	if kept := books(); len(kept) == 0 || kept[len(kept)-1]["gone"].Retries != 3 || !kept[len(kept)-1]["ready"].Ready {
		t.Errorf("books kept: %+v", kept)
	}
}

// adoptedSystem adopts adoptState with runs (the previous supervisor's,
// by name) and books, and runs the tree on what it took over. books
// returns every Books handed to OnBooks so far.
func adoptedSystem(t *testing.T, e *fakeEngine, runs map[string]*fakeRun, kept Books) (sys *System, ad *Adoption, books func() []Books) {
	t.Helper()
	st := adoptState(t)
	ad = Adopt(st, &fakeAdopter{e: e, runs: runs}, kept, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var mu sync.Mutex
	var all []Books
	sys = startSystemCfg(t, Config{State: st, Engine: e, Adopted: ad, OnBooks: func(b Books) {
		mu.Lock()
		all = append(all, b)
		mu.Unlock()
	}})
	return sys, ad, func() []Books {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(all)
	}
}

// panickyAdopter panics taking one container over.
type panickyAdopter struct {
	fakeAdopter
	panicOn string
}

func (a *panickyAdopter) AdoptContainer(c *state.Container) (Mount, Run, *messages.Lease, error) {
	if c.Name == a.panicOn {
		panic("adopter bug")
	}
	return a.fakeAdopter.AdoptContainer(c)
}

// Containers are taken over side by side; one whose take-over panics
// starts afresh, and the others are adopted as if nothing happened.
func TestAdoptSurvivesAPanic(t *testing.T) {
	e := newFakeEngine()
	ready := &fakeRun{e: e, name: "ready", pid: 41, exit: make(chan messages.Exit, 1)}
	fresh := &fakeRun{e: e, name: "fresh", pid: 43, exit: make(chan messages.Exit, 1)}
	a := &panickyAdopter{fakeAdopter: fakeAdopter{e: e, runs: map[string]*fakeRun{"ready": ready, "fresh": fresh}}, panicOn: "gone"}
	ad := Adopt(adoptState(t), a, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !slices.Equal(ad.Fresh, []string{"gone"}) || len(ad.Running) != 2 {
		t.Errorf("running %v, fresh %v: want ready and fresh running, gone fresh", ad.Running, ad.Fresh)
	}
}

// A container the API stopped stays down under the next supervisor: the
// books carry the stop. Before, the supervisor PID 1 started again
// started it as at boot.
func TestAdoptLeavesAContainerStoppedThroughTheAPIDown(t *testing.T) {
	e := newFakeEngine()
	ready := &fakeRun{e: e, name: "ready", pid: 41, exit: make(chan messages.Exit, 1)}
	gone := &fakeRun{e: e, name: "gone", pid: 42, exit: make(chan messages.Exit, 1)}
	sys, _, books := adoptedSystem(t, e, map[string]*fakeRun{"ready": ready, "gone": gone},
		Books{"ready": {Ready: true}, "fresh": {Stopped: true}})
	stayStopped(t, sys, e, "fresh", 0)
	if kept := books(); len(kept) < 2 || !kept[0]["fresh"].Stopped || kept[len(kept)-1]["fresh"].Stopped {
		t.Errorf("books kept: %+v; want fresh stopped, then not once the API started it", kept)
	}
}

// So with one whose init ended in the gap (the previous supervisor died
// in the middle of its stop): the stop is carried out, and its policy
// (always) does not start it again. Before the books carried the stop,
// it was recovered.
func TestAdoptDoesNotRecoverAContainerStoppedThroughTheAPI(t *testing.T) {
	e := newFakeEngine()
	gone := &fakeRun{e: e, name: "gone", pid: 42, exit: make(chan messages.Exit, 1)}
	gone.Exit(0, 15) // in the gap
	sys, _, _ := adoptedSystem(t, e, map[string]*fakeRun{"gone": gone}, Books{"gone": {Stopped: true}})
	stayStopped(t, sys, e, "gone", 0)
}

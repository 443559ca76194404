package actors

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// A container stopped through the API has STOPPED for its goal, as
// upstream sets it, until the API starts it again. These tests hold that
// goal across what makes a revision actor anew: a non-reboot update that
// keeps the container, and a restart of the revision after a Go panic.

// panicRevision makes the running revision actor panic: it dereferences
// a nil status change.
func panicRevision(sys *System) {
	rev := actor.NewPID(sys.sys.Address(), sys.Tree().Children[0].Path)
	sys.sys.Root.Send(rev, (*messages.ContainerStatusChanged)(nil))
}

// stayStopped checks that name stays STOPPED with no run for a while, then
// that an API start brings it up.
func stayStopped(t *testing.T, sys *System, e *fakeEngine, name string, starts int) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	waitStatus(t, sys, map[string]messages.Status{name: messages.StatusStopped})
	if n := countEvents(e, "start "+name); n != starts {
		t.Errorf("%s started %d times, want %d (stopped through the API): %v", name, n, starts, e.Events())
	}
	if err := sys.ContainerAction(name, "start"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sys, map[string]messages.Status{name: messages.StatusStarted})
}

// Before, the next revision took the kept STOPPED container for one still
// on its way to its goal, with no group timer to end the wait: the update
// stayed INPROGRESS for good.
func TestAPIStopHoldsAcrossANonRebootUpdate(t *testing.T) {
	u := newFakeUpdates("1")
	rig := stopOtherThenUpdate(t, Config{}, u)
	waitStatus(t, rig.sys, map[string]messages.Status{"app": messages.StatusStarted})
	stayStopped(t, rig.sys, rig.e, "other", 1)
}

// stopOtherThenUpdate runs appState with cfg, stops other through the
// API, and runs locals/b, which changes app and keeps other, to UPDATED.
func stopOtherThenUpdate(t *testing.T, cfg Config, u *fakeUpdates) *updateRig {
	t.Helper()
	cfg.State = appState(t, "/sbin/init", "/bin/a", nil)
	rig := startUpdateRig(t, cfg, u)
	waitStatus(t, rig.sys, allStarted)
	if err := rig.sys.ContainerAction("other", "stop"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, rig.sys, map[string]messages.Status{"other": messages.StatusStopped})
	u.states["locals/b"] = appState(t, "/sbin/init", "/bin/b", nil)
	if err := rig.sys.RunRevision("locals/b", false); err != nil {
		t.Fatal(err)
	}
	u.waitStatus(t, "locals/b", storage.StatusUpdated)
	return rig
}

// A stop through the API that reaches the running revision while it
// hands a kept container over to the next one holds too. Before, the
// stop was answered and lost: the container's actor had given its record
// away, and the container ran on in the next revision.
func TestAPIStopDuringAHandoverHolds(t *testing.T) {
	rig, u := inAHandover(t)
	if err := rig.sys.ContainerAction("other", "stop"); err != nil {
		t.Fatal(err)
	}
	u.waitStatus(t, "locals/b", storage.StatusUpdated)
	stayStopped(t, rig.sys, rig.e, "other", 1)
}

// Before, the restarted revision started every container afresh, the one
// the API had stopped too.
func TestAPIStopHoldsAcrossARevisionPanic(t *testing.T) {
	sys, e := stopOtherThenPanic(t, appState(t, "/sbin/init", "/bin/a", nil), panicRevision)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted, "sys": messages.StatusStarted})
	stayStopped(t, sys, e, "other", 1)
}

// stopOtherThenPanic runs st (of sys, app and other), stops other through
// the API, makes an actor panic (panicOf: panicRevision, or root) and
// waits until app was started again.
func stopOtherThenPanic(t *testing.T, st *state.State, panicOf func(*System)) (*System, *fakeEngine) {
	t.Helper()
	e := newFakeEngine()
	sys := startSystem(t, st, e)
	waitStatus(t, sys, allStarted)
	if err := sys.ContainerAction("other", "stop"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sys, map[string]messages.Status{"other": messages.StatusStopped})
	panicOf(sys)
	waitEvents(t, e, "start app", 2, 5*time.Second)
	return sys, e
}

// So across a restart of root after a Go panic (a nil boot report here),
// which makes the revision actor anew. Before, root's new incarnation
// started every container afresh.
func TestAPIStopHoldsAcrossARootPanic(t *testing.T) {
	sys, e := stopOtherThenPanic(t, appState(t, "/sbin/init", "/bin/a", nil), func(sys *System) {
		sys.sys.Root.Send(sys.root, (*messages.RevisionBooted)(nil))
	})
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted, "sys": messages.StatusStarted})
	stayStopped(t, sys, e, "other", 1)
}

// A container the API stopped does not hold back the groups after its
// own: its goal is reached. Before, the restarted revision waited for it
// until its group's timeout (30 s here).
func TestAPIStoppedContainerDoesNotHoldBackTheNextGroup(t *testing.T) {
	doc := appDoc("/sbin/init", "/bin/a", nil)
	doc["device.json"] = map[string]any{"groups": []any{
		map[string]any{"name": "core", "restart_policy": "system"},
		map[string]any{"name": "platform", "restart_policy": "container", "timeout": 30},
		map[string]any{"name": "apps", "restart_policy": "container"},
	}}
	doc["other/run.json"] = map[string]any{"name": "other", "group": "platform"}
	sys, _ := stopOtherThenPanic(t, parseState(t, doc), panicRevision)
	gs, err := sys.Groups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if g.Name == "platform" && g.Status != messages.StatusReady {
			t.Errorf("group platform is %s, want READY (its one container stopped through the API)", g.Status)
		}
	}
}

// A kept container that ended on its own (policy no), cleanly or not, is
// started afresh by a non-reboot update, as a reboot update would. Before,
// the next revision waited for one that had STOPPED to reach its goal,
// with no timer to end the wait (the update stayed INPROGRESS for good),
// and took one that had FAILED for a goal the update missed (the update
// failed and rolled back).
func TestKeptContainerThatEndedIsStartedAfreshByAnUpdate(t *testing.T) {
	for _, tc := range []struct {
		code int
		ends messages.Status
	}{{0, messages.StatusStopped}, {1, messages.StatusFailed}} {
		t.Run(string(tc.ends), func(t *testing.T) {
			u := newFakeUpdates("1")
			oneShot := func(exec string) map[string]any {
				doc := appDoc("/sbin/init", exec, nil)
				doc["other/run.json"] = map[string]any{"name": "other", "group": "apps", "auto_recovery": map[string]any{"policy": "no"}}
				return doc
			}
			rig := startUpdateRig(t, Config{State: parseState(t, oneShot("/bin/a"))}, u)
			waitStatus(t, rig.sys, allStarted)
			rig.e.run("other").Exit(tc.code, 0)
			waitStatus(t, rig.sys, map[string]messages.Status{"other": tc.ends})
			u.states["locals/b"] = parseState(t, oneShot("/bin/b"))
			if err := rig.sys.RunRevision("locals/b", false); err != nil {
				t.Fatal(err)
			}
			u.waitStatus(t, "locals/b", storage.StatusUpdated)
			waitStatus(t, rig.sys, allStarted)
			if n := countEvents(rig.e, "start other"); n != 2 {
				t.Errorf("other started %d times, want 2: %v", n, rig.e.Events())
			}
		})
	}
}

// A kept container that is up but short of its goal (READY, never
// signalled) gets its group's timeout in the next revision too. Before,
// no timer was armed for a kept container, and the update waited for the
// goal for good.
func TestKeptContainerShortOfItsGoalTimesOut(t *testing.T) {
	u := newFakeUpdates("1")
	waitsForReady := func(exec string) *state.State {
		doc := appDoc("/sbin/init", exec, nil)
		doc["device.json"] = map[string]any{"groups": []any{
			map[string]any{"name": "core", "restart_policy": "system"},
			map[string]any{"name": "apps", "restart_policy": "container", "timeout": 1},
		}}
		doc["other/run.json"] = map[string]any{"name": "other", "group": "apps", "status_goal": "READY"}
		return parseState(t, doc)
	}
	rig := startUpdateRig(t, Config{State: waitsForReady("/bin/a")}, u)
	waitStatus(t, rig.sys, allStarted)
	u.states["locals/b"] = waitsForReady("/bin/b")
	if err := rig.sys.RunRevision("locals/b", false); err != nil {
		t.Fatal(err)
	}
	if msg := u.waitStatus(t, "locals/b", storage.StatusError); msg != storage.MsgStatusGoalFailed {
		t.Errorf("the update failed with %q, want %q", msg, storage.MsgStatusGoalFailed)
	}
}

// The books of the next revision reach Config.OnBooks after root named
// that revision to Config.OnRevision, which starts the running record
// afresh for it: before, the revision's first books could come first
// (root called OnRevision after the spawn) and be wiped, and a
// supervisor restarted then lost the stop (here) or a READY.
func TestBooksOfTheNextRevisionFollowItsRecord(t *testing.T) {
	u := newFakeUpdates("1")
	var mu sync.Mutex
	var calls []string
	cfg := Config{
		OnRevision: func(rev string, _ *state.State, _ bool) {
			time.Sleep(50 * time.Millisecond) // a slow write of the record
			mu.Lock()
			calls = append(calls, "revision "+rev)
			mu.Unlock()
		},
		OnBooks: func(b Books) {
			mu.Lock()
			calls = append(calls, fmt.Sprintf("books other stopped=%v", b["other"].Stopped))
			mu.Unlock()
		}}
	stopOtherThenUpdate(t, cfg, u)
	mu.Lock()
	defer mu.Unlock()
	rec := slices.Index(calls, "revision locals/b")
	if rec < 0 || !slices.Contains(calls[rec:], "books other stopped=true") {
		t.Errorf("no books with other stopped after the record of locals/b: %v", calls)
	}
}

// A revision actor that panics while it hands over to the next one goes
// on with the handover: root resumes it instead of making it anew. Before,
// the new incarnation lost the records detached so far and root's answer:
// the update stayed INPROGRESS for good, and the new incarnation started
// the kept containers beside their runs, which no actor owned any more
// (the fake engine's overlap check: "mount of sys begun with 1 alive").
func TestRevisionPanicDuringAHandoverGoesOn(t *testing.T) {
	panicDuringAHandover(t, panicRevision)
}

// inAHandover runs appState and a non-reboot update to locals/b, which
// changes app and keeps sys and other, and returns once the handover is
// stopping app (slowly, 300 ms).
func inAHandover(t *testing.T) (*updateRig, *fakeUpdates) {
	t.Helper()
	return inAHandoverFrom(t, "1")
}

// inAHandoverFrom is inAHandover from revision rev, committed.
func inAHandoverFrom(t *testing.T, rev string) (*updateRig, *fakeUpdates) {
	t.Helper()
	u := newFakeUpdates(rev)
	rig := startUpdateRig(t, Config{Rev: rev, State: appState(t, "/sbin/init", "/bin/a", nil)}, u)
	waitStatus(t, rig.sys, allStarted)
	rig.e.mu.Lock()
	rig.e.slowDestroy["app"] = 300 * time.Millisecond // the handover stops app, slowly
	rig.e.mu.Unlock()
	u.states["locals/b"] = appState(t, "/sbin/init", "/bin/b", nil)
	if err := rig.sys.RunRevision("locals/b", false); err != nil {
		t.Fatal(err)
	}
	waitEvents(t, rig.e, "stop app", 1, 2*time.Second)
	return rig, u
}

// panicDuringAHandover runs a non-reboot update that keeps sys and other,
// makes an actor panic (panicOf) while it stops app, and checks that the
// update finishes with sys and other kept running.
func panicDuringAHandover(t *testing.T, panicOf func(*System)) {
	t.Helper()
	rig, u := inAHandover(t)
	panicOf(rig.sys)
	u.waitStatus(t, "locals/b", storage.StatusUpdated)
	waitStatus(t, rig.sys, allStarted)
	for _, name := range []string{"sys", "other"} {
		if n := countEvents(rig.e, "start "+name); n != 1 {
			t.Errorf("%s started %d times, want 1 (kept running): %v", name, n, rig.e.Events())
		}
	}
}

// So when root panics during the handover: its guardian resumes it.
// Before, root's new incarnation stopped the revision, lost what it had
// detached, started those containers again beside their runs, and the
// update stayed INPROGRESS (the same failures as above).
func TestRootPanicDuringAHandoverGoesOn(t *testing.T) {
	panicDuringAHandover(t, func(sys *System) { sys.sys.Root.Send(sys.root, (*messages.RevisionBooted)(nil)) })
}

// A container that exits on its own while a stop or restart through the
// API is on its way to its actor ended as the API asked: a stop leaves it
// STOPPED with its exit shown, a restart starts it again and is answered
// done, and its recovery policy has no say. Before, the exit went
// through the policy, as the stop had not reached the actor: with retries
// left the container was started again, then stopped (and a restart was
// answered "start failed"), and with none, while the revision was being
// tried, the update rolled back for a container the API was taking down.
func TestAPIActionRacingAnExit(t *testing.T) {
	for _, action := range []string{"stop", "restart"} {
		for _, tt := range []struct {
			name   string
			policy map[string]any
		}{
			{"retries left", map[string]any{"policy": "on-failure", "max_retries": 3, "retry_delay": 0}},
			{"none left, trying", map[string]any{"policy": "no"}},
		} {
			t.Run(action+"/"+tt.name, func(t *testing.T) {
				e := newFakeEngine()
				var rollbacks atomic.Int32
				sys := startSystemCfg(t, Config{State: oneContainer(t, map[string]any{"auto_recovery": tt.policy}),
					Engine: e, Trying: true, OnRollback: func(string) { rollbacks.Add(1) }})
				waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
				// The exit reaches app's actor first, the action's stop
				// right after it.
				release := make(chan struct{})
				sys.sys.Root.Send(sys.revisionChild("app"), hang{until: release})
				e.run("app").Exit(1, 0)
				time.Sleep(100 * time.Millisecond) // the exit's report is queued
				answer := make(chan error, 1)
				go func() { answer <- sys.ContainerAction("app", action) }()
				if action == "stop" {
					if err := <-answer; err != nil { // answered at once
						t.Fatal(err)
					}
				} else {
					time.Sleep(100 * time.Millisecond) // the restart's stop is queued
				}
				close(release)
				want, starts := messages.StatusStopped, 1
				if action == "restart" {
					if err := <-answer; err != nil {
						t.Errorf("restart answered %v, want done", err)
					}
					want, starts = messages.StatusStarted, 2
				}
				waitStatus(t, sys, map[string]messages.Status{"app": want})
				time.Sleep(300 * time.Millisecond)
				if c := info(t, sys, "app"); c.Status != want || (action == "stop" && (c.LastExit == nil || c.LastExit.Code != 1)) {
					t.Errorf("app %s, last exit %+v: want %s after its exit with code 1", c.Status, c.LastExit, want)
				}
				if n := countEvents(e, "start app"); n != starts || rollbacks.Load() != 0 {
					t.Errorf("%d starts, %d rollbacks, want %d and 0: %v", n, rollbacks.Load(), starts, e.Events())
				}
				if countEvents(e, "stop app") != 0 {
					// The stop signals a run that is still up: it came first.
					t.Errorf("the stop reached app's actor before its exit; the race was not tested: %v", e.Events())
				}
			})
		}
	}
}

// A revision actor that keeps panicking during a handover is stopped once
// past its budget, before it answers root. Before, root waited for that
// answer for good: the update stayed INPROGRESS, every later one was
// refused, and the containers whose records the revision had detached
// ran on, owned by no actor. Root now reboots, as when a revision cannot
// hand over: pv_try names the update, which the next boot tries, and the
// reboot takes those containers down.
func TestRevisionPanicsPastItsBudgetDuringAHandoverReboot(t *testing.T) {
	rig, u := inAHandover(t)
	for range 4 { // resumed three times within a minute, then stopped
		panicRevision(rig.sys)
	}
	select {
	case why := <-rig.reboots:
		if !strings.Contains(why, "locals/b") {
			t.Errorf("reboot %q, want one for the update to locals/b", why)
		}
	case <-time.After(5 * time.Second):
		p, _ := u.Progress("locals/b")
		t.Fatalf("no reboot; progress of locals/b %+v, events %v", p, rig.e.Events())
	}
	if p, _ := u.Progress("locals/b"); p == nil || p.Status != storage.StatusInProgress {
		t.Errorf("progress of locals/b %+v, want INPROGRESS for the next boot to try", p)
	}
	for _, name := range []string{"sys", "other"} {
		rig.e.run(name).Exit(0, 9) // the reboot takes down what was detached
	}
}

package actors

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
)

// giveUpAfterAStop supervises one container actor as a stopping revision
// does, in the order that made a shutdown hang: the container's exit has
// failed the actor, a StopContainer is already queued behind it (the
// revision sent it before the failure reached it), and the revision gives
// the container up.
type giveUpAfterAStop struct{}

func (giveUpAfterAStop) HandleFailure(sys *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, _, _ any) {
	sys.Root.Send(child, &messages.StopContainer{Timeout: time.Second})
	sup.ResumeChildren(child)
	sys.Root.Send(child, &messages.RecoveryDecided{Status: messages.StatusStopped, Reason: "exited"})
}

// A container that exits just before a stop of it is processed, and is
// then given up, is reported STOPPED once the stop's teardown is done, and
// later stops still end. Before, the decision bumped the generation under
// the teardown in flight: STOPPED came at once, while the dead run was
// still being destroyed, and the teardown's own result was dropped as
// stale, so the container stayed "stopping" for good and every later
// StopContainer was answered STOPPING only. A revision that sent a second
// stop (a status queued before the failure overwrote its row) then waited
// forever: the shutdown hang of TestReliabilitySupervisorKillDuringUpdates.
func TestGiveUpDuringAStopEndsStopped(t *testing.T) {
	e := newFakeEngine()
	e.slowDestroy["app"] = 300 * time.Millisecond
	spec := oneContainer(t, map[string]any{"auto_recovery": map[string]any{"policy": "no"}}).Containers[0]
	statuses := make(chan messages.Status, 64)
	sys, log := bareSystem(t)
	var child *actor.PID
	parent := actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *actor.Started:
			child = ctx.Spawn(newContainerProps(&containerRecord{spec: spec}, e, "0", log, false))
			ctx.Send(child, &messages.StartContainer{})
		case *messages.ContainerStatusChanged:
			statuses <- m.Status
		}
	}, actor.WithSupervisor(giveUpAfterAStop{}))
	pid := sys.Root.Spawn(parent)
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })

	// next waits for the next status that is not a transition (nor the
	// first INSTALLED).
	next := func(what string) messages.Status {
		t.Helper()
		for {
			select {
			case s := <-statuses:
				if s != messages.StatusInstalled && s != messages.StatusStarting && s != messages.StatusStopping {
					return s
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: no status after 5s: %v", what, e.Events())
			}
		}
	}
	if s := next("start"); s != messages.StatusStarted {
		t.Fatalf("start: %s, want STARTED", s)
	}
	e.run("app").Exit(0, 0)
	if s := next("exit, stop and give-up"); s != messages.StatusStopped {
		t.Fatalf("exit, stop and give-up: %s, want STOPPED", s)
	}
	if index(e.Events(), "unmount app") < 0 {
		t.Fatalf("STOPPED before the teardown was done: %v", e.Events())
	}
	sys.Root.Send(child, &messages.StopContainer{Timeout: time.Second})
	if s := next("a second stop"); s != messages.StatusStopped {
		t.Fatalf("a second stop: %s, want STOPPED", s)
	}
	sys.Root.Send(child, &messages.StartContainer{})
	if s := next("start again"); s != messages.StatusStarted {
		t.Fatalf("start again: %s, want STARTED", s)
	}
	sys.Root.Send(child, &messages.StopContainer{Timeout: time.Second})
	if s := next("stop again"); s != messages.StatusStopped {
		t.Fatalf("stop again: %s, want STOPPED", s)
	}
	if n := countEvents(e, "unmount app"); n != 2 {
		t.Errorf("%d unmounts, want 2: %v", n, e.Events())
	}
}

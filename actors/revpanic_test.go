package actors

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
)

// A revision actor restarted after a Go panic stops its container actors
// and makes them anew. One stopped while its container was being started
// must not leave that container behind when the start comes back: the new
// actor starts the container again, and the first run would go on beside
// it, owned by nobody.
func TestRevisionPanicDuringAStartLeavesNoContainer(t *testing.T) {
	e := newFakeEngine()
	e.startDly["app"] = 500 * time.Millisecond
	sys := startSystem(t, oneContainer(t, map[string]any{"auto_recovery": map[string]any{"policy": "no"}}), e)
	waitEvents(t, e, "mount app", 1, 5*time.Second)
	rev := actor.NewPID(sys.sys.Address(), sys.Tree().Children[0].Path)
	// A nil status change: the revision actor dereferences it and panics.
	sys.sys.Root.Send(rev, (*messages.ContainerStatusChanged)(nil))
	waitEvents(t, e, "start app", 2, 10*time.Second)
	waitStatus(t, sys, map[string]messages.Status{"app": messages.StatusStarted})
	deadline := time.Now().Add(5 * time.Second)
	for {
		starts, destroys := countEvents(e, "start app"), countEvents(e, "destroy app")
		mounts, unmounts := countEvents(e, "mount app"), countEvents(e, "unmount app")
		if starts-destroys == 1 && mounts-unmounts == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d runs and %d mounts of app left, want 1 and 1: %v", starts-destroys, mounts-unmounts, e.Events())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The container is the same, and so are its places: the new actor
	// mounts only once the first start is undone.
	ev := e.Events()
	secondMount := index(ev[index(ev, "mount app")+1:], "mount app") + index(ev, "mount app") + 1
	if u := index(ev, "unmount app"); u < 0 || u > secondMount {
		t.Errorf("app mounted again before its first mount was undone: %v", ev)
	}
}

// So with a pool: its setup under way is torn down before the revision's
// new pool actor sets the same bridge and rules up. Before, it was torn
// down when it ended, after the new setup: the new pool's bridge went
// with it.
func TestRevisionPanicDuringAPoolSetupTearsItDownFirst(t *testing.T) {
	e := newFakeEngine()
	hold := make(chan struct{})
	sys := startSystemCfg(t, Config{State: pooledState(t), Engine: e, PoolNet: &firstHeld{fakePoolNet: fakePoolNet{e: e}, pool: "iso", hold: hold}})
	waitStatus(t, sys, map[string]messages.Status{"web": messages.StatusStarted, "db": messages.StatusStarted})
	rev := actor.NewPID(sys.sys.Address(), sys.Tree().Children[0].Path)
	sys.sys.Root.Send(rev, (*messages.ContainerStatusChanged)(nil))
	time.Sleep(300 * time.Millisecond) // the old pool actor is stopping
	close(hold)
	waitEvents(t, e, "setup iso peers=pvbr0", 2, 5*time.Second)
	ev := e.Events()
	first := index(ev, "setup iso peers=pvbr0")
	second := first + 1 + index(ev[first+1:], "setup iso peers=pvbr0")
	if td := index(ev, "teardown iso"); td < 0 || td > second {
		t.Errorf("iso set up again at %d, the first setup torn down at %d: %v", second, td, ev)
	}
}

// firstHeld holds the first setup of pool until hold is closed; the
// others go through at once.
type firstHeld struct {
	fakePoolNet
	pool string
	hold chan struct{}
	n    atomic.Int32
}

func (f *firstHeld) Setup(p state.Pool, peers []string) (PoolSetup, error) {
	if p.Name == f.pool && f.n.Add(1) == 1 {
		<-f.hold
	}
	return f.fakePoolNet.Setup(p, peers)
}

// A revision restarted after a panic makes its container actors anew. The
// old actor of one whose stop was under way waits for that stop's
// teardown before it goes: before, an API start of the container right
// after the restart mounted it while the old teardown still destroyed and
// unmounted it (the fake engine's overlap check fails the test).
func TestRevisionPanicDuringAStopWaitsForItsTeardown(t *testing.T) {
	e, sys := slowTeardown(t)
	if err := sys.ContainerAction("app", "stop"); err != nil {
		t.Fatal(err)
	}
	waitEvents(t, e, "stop app", 1, 5*time.Second) // the teardown is under way
	panicRevision(sys)
	waitEvents(t, e, "start sys", 2, 10*time.Second) // the revision restarted
	// Stopped through the API, it stays down until the API starts it.
	if err := sys.ContainerAction("app", "start"); err != nil {
		t.Fatal(err)
	}
	waitEvents(t, e, "start app", 2, 10*time.Second)
	ev := e.Events()
	second := index(ev[index(ev, "mount app")+1:], "mount app") + index(ev, "mount app") + 1
	if u := index(ev, "unmount app"); u < 0 || u > second {
		t.Errorf("app mounted again before its stop's teardown was done: %v", ev)
	}
}

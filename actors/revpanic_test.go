package actors

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
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

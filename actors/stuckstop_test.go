package actors

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/storage"
)

// stuckRow waits until name is STOPPING with its processes stuck, and
// returns its row.
func stuckRow(t *testing.T, sys *System, name string) messages.ContainerInfo {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := info(t, sys, name)
		if c.Status == messages.StatusStopping && strings.Contains(c.Error, "outlive the stop") {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never shown stuck: %+v", name, c)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A container whose processes survive the stop's SIGKILL (uninterruptible
// sleep: a hung FUSE server, a dead disk) is not STOPPED while they live:
// it stays STOPPING with why and its init's pid, nothing of it is
// destroyed or unmounted under them, and a start is refused as for any
// container stopping. Once they end, its teardown ends too: STOPPED, and
// it starts again. Before, it was reported STOPPED with no pid once the
// driver gave up, its run forgotten: its cgroups and libcontainer state
// stayed, and every start failed on the container left running.
func TestStopOfAContainerWhoseProcessesSurviveSIGKILL(t *testing.T) {
	e, sys := startedApp(t)
	pid := info(t, sys, "other").Pid
	held := e.holdStops("other")
	if err := sys.ContainerAction("other", "stop"); err != nil {
		t.Fatal(err)
	}
	if c := stuckRow(t, sys, "other"); c.Pid != pid {
		t.Errorf("stuck container shows pid %d, want its init's %d", c.Pid, pid)
	}
	time.Sleep(200 * time.Millisecond)
	if c := info(t, sys, "other"); c.Status != messages.StatusStopping {
		t.Errorf("with its processes alive: %s, want STOPPING", c.Status)
	}
	if n := countEvents(e, "destroy other") + countEvents(e, "unmount other"); n != 0 {
		t.Errorf("destroyed or unmounted under processes that live: %v", e.Events())
	}
	var ae *messages.ActionError
	if err := sys.ContainerAction("other", "start"); !errors.As(err, &ae) || ae.Outcome != messages.WrongState {
		t.Errorf("start of a stuck container: %v, want WrongState", err)
	}
	close(held)
	waitStatus(t, sys, map[string]messages.Status{"other": messages.StatusStopped})
	if c := info(t, sys, "other"); c.Pid != 0 || c.Error != "" {
		t.Errorf("stopped at last: pid %d, error %q", c.Pid, c.Error)
	}
	if countEvents(e, "destroy other") != 1 || countEvents(e, "unmount other") != 1 {
		t.Errorf("not torn down once its processes ended: %v", e.Events())
	}
	if err := sys.ContainerAction("other", "start"); err != nil {
		t.Fatalf("start once stopped: %v", err)
	}
}

// A restart through the API of a container whose processes survive
// SIGKILL is answered as failed as soon as that is known, not after the
// request's minute.
func TestRestartOfAContainerWhoseProcessesSurviveSIGKILL(t *testing.T) {
	e, sys := startedApp(t)
	held := e.holdStops("other")
	defer close(held)
	start := time.Now()
	var ae *messages.ActionError
	err := sys.ContainerAction("other", "restart")
	if !errors.As(err, &ae) || ae.Outcome != messages.StartFailed || !strings.Contains(ae.Detail, "outlive the stop") {
		t.Errorf("restart: %v, want a failure naming the processes that survive", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("restart answered after %v", took)
	}
}

// The device's stop goes on past a container whose processes survive
// SIGKILL: the containers of earlier groups are stopped in order, the
// shutdown ends, and the reboot takes the stuck processes down.
func TestShutdownGoesOnPastAStuckContainer(t *testing.T) {
	e, sys := startedApp(t)
	held := e.holdStops("app")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := sys.Shutdown(ctx, "reboot"); err != nil {
		t.Fatalf("shutdown with a stuck container: %v", err)
	}
	// The container actor, stopping for good, waits workWait for the
	// teardown under way before it leaves it to finish.
	if took := time.Since(start); took > workWait+2*time.Second {
		t.Errorf("shutdown took %v", took)
	}
	for _, ev := range []string{"stop sys", "stop other", "unmount sys", "unmount other"} {
		if countEvents(e, ev) != 1 {
			t.Errorf("no %q: %v", ev, e.Events())
		}
	}
	// Its processes end once its actor is gone: its teardown, left to
	// finish, touches nothing a next actor may have made in its places.
	close(held)
	time.Sleep(200 * time.Millisecond)
	if n := countEvents(e, "destroy app") + countEvents(e, "unmount app"); n != 0 {
		t.Errorf("app destroyed or unmounted after its actor stopped: %v", e.Events())
	}
}

// A non-reboot update whose changed container's processes survive
// SIGKILL is not handed over: its teardown, still waiting for them, would
// unmount and remove, whenever they end, what the next revision's
// container of the same name mounted in the same places. Root reboots at
// once, with the update still INPROGRESS, for the next boot to try it;
// the next revision never starts.
func TestHandoverOfAContainerWhoseProcessesSurviveSIGKILLReboots(t *testing.T) {
	u := newFakeUpdates("1")
	rig := startUpdateRig(t, Config{State: appState(t, "/sbin/init", "/bin/a", nil)}, u)
	waitStatus(t, rig.sys, allStarted)
	held := rig.e.holdStops("app")
	u.states["locals/b"] = appState(t, "/sbin/init", "/bin/b", nil)
	if err := rig.sys.RunRevision("locals/b", false); err != nil {
		t.Fatal(err)
	}
	why := rig.waitReboot(t)
	if !strings.Contains(why, "locals/b") || !strings.Contains(why, "could not hand over") {
		t.Errorf("reboot %q does not say the transition to locals/b was given up", why)
	}
	if s, msg := u.status("locals/b"); s != storage.StatusInProgress {
		t.Errorf("progress %s %q, want INPROGRESS for the next boot to try it", s, msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rig.sys.Shutdown(ctx, "the reboot"); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if n := countEvents(rig.e, "mount app"); n != 1 {
		t.Errorf("app mounted %d times: the next revision started it in the places its stuck run holds: %v", n, rig.e.Events())
	}
	// What the reboot ends.
	close(held)
	for _, name := range []string{"sys", "other"} {
		if r := rig.e.run(name); r != nil {
			r.Exit(0, 9)
		}
	}
}

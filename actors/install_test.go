package actors

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/storage"
	"github.com/pantavisor/pv/update"
)

// slowInstallRig runs revision "1" with an update "locals/b" (app
// changed) whose install is held until the returned gate is closed.
func slowInstallRig(t *testing.T) (*updateRig, chan struct{}) {
	t.Helper()
	return slowInstallRigFrom(t, "1")
}

// slowInstallRigFrom is slowInstallRig from revision rev, committed.
func slowInstallRigFrom(t *testing.T, rev string) (*updateRig, chan struct{}) {
	t.Helper()
	u := newFakeUpdates(rev)
	gate := make(chan struct{})
	u.installGate, u.installStarted = gate, make(chan string, 1)
	rig := startUpdateRig(t, Config{Rev: rev, State: appState(t, "/sbin/init", "/bin/a", nil)}, u)
	t.Cleanup(func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	})
	waitStatus(t, rig.sys, allStarted)
	u.states["locals/b"] = appState(t, "/sbin/init", "/bin/b", nil)
	return rig, gate
}

// runInBackground starts RunRevision(rev) and returns where its result
// comes, once the install has begun.
func runInBackground(t *testing.T, rig *updateRig, rev string) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- rig.sys.RunRevision(rev, false) }()
	select {
	case got := <-rig.u.installStarted:
		if got != rev {
			t.Fatalf("install of %s began, want %s", got, rev)
		}
	case err := <-done:
		t.Fatalf("run %s ended before its install began: %v", rev, err)
	case <-time.After(5 * time.Second):
		t.Fatalf("the install of %s never began", rev)
	}
	return done
}

func waitRun(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("the run was not answered after its install ended")
		return nil
	}
}

// An install that takes long (rpiab writes a boot image onto the try
// partition: seconds to minutes on an SD card) leaves root answering:
// the watchdog's probe passes, the tree shows the install, and what an
// update under way refuses is refused. Before, the install ran in root's
// Receive: root was silent for as long as it took, and a silence of one
// watchdog timeout resets the board in the middle of the install.
func TestRootAnswersDuringALongInstall(t *testing.T) {
	rig, gate := slowInstallRig(t)
	done := runInBackground(t, rig, "locals/b")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err := rig.sys.Alive(ctx)
	cancel()
	if err != nil {
		t.Fatalf("the watchdog's probe during the install: %v", err)
	}
	if n := rig.sys.Tree(); n.Info["update"] != "locals/b installing" {
		t.Errorf("root during the install: status %q, info %v", n.Status, n.Info)
	}
	revs, err := rig.sys.Revisions()
	if err != nil || !revs.Updating || revs.Running != "1" {
		t.Errorf("revisions during the install: %+v %v", revs, err)
	}
	rig.u.states["locals/c"] = appState(t, "/sbin/init", "/bin/c", nil)
	if err := rig.sys.RunRevision("locals/c", false); !errors.Is(err, update.ErrUpdateOngoing) {
		t.Errorf("a second run during the install: %v", err)
	}
	if err := rig.sys.Power(false, "now"); !errors.Is(err, update.ErrUpdateOngoing) {
		t.Errorf("a reboot during the install: %v", err)
	}

	close(gate)
	if err := waitRun(t, done); err != nil {
		t.Fatalf("run once installed: %v", err)
	}
	rig.u.waitStatus(t, "locals/b", storage.StatusUpdated)
	want := transitionCalls("locals/b")
	if got := rig.u.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls:\n got %q\nwant %q", got, want)
	}
}

// A shutdown asked for during an install waits for it: the device does
// not stop under the install's writes. The update is then left for the
// next boot to try (INPROGRESS, by a reboot), and the run is answered.
func TestShutdownWaitsForTheInstall(t *testing.T) {
	rig, gate := slowInstallRig(t)
	done := runInBackground(t, rig, "locals/b")
	stopped := shutdownInBackground(rig)
	// A system container giving up meanwhile waits too.
	rig.sys.sys.Root.Send(rig.sys.root, &messages.RebootRequested{Reason: "sys gave up"})
	select {
	case err := <-stopped:
		t.Fatalf("shutdown ended during the install: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if n := countEvents(rig.e, "stop sys") + countEvents(rig.e, "stop app"); n != 0 {
		t.Fatalf("containers stopped during the install: %v", rig.e.Events())
	}

	close(gate)
	shutdownLeftTheUpdate(t, rig, done, stopped)
	if n := countEvents(rig.e, "start app"); n != 1 {
		t.Errorf("app started %d times: the shutdown made a transition: %v", n, rig.e.Events())
	}
}

// An install that panics is answered as a refusal, its outcome unknown
// (ERROR: a pv_try it may have stored is rolled back by the next boot),
// and later runs are not refused as an update under way.
func TestInstallThatPanicsIsAnswered(t *testing.T) {
	u := newFakeUpdates("1")
	u.installPanics = true
	rig := startUpdateRig(t, Config{State: appState(t, "/sbin/init", "/bin/a", nil)}, u)
	waitStatus(t, rig.sys, allStarted)
	u.states["locals/b"] = appState(t, "/sbin/init", "/bin/b", nil)
	err := rig.sys.RunRevision("locals/b", false)
	if !errors.Is(err, bootloader.ErrUnconfirmed) {
		t.Fatalf("run whose install panicked: %v", err)
	}
	if s, _ := u.status("locals/b"); s != storage.StatusError {
		t.Errorf("progress after the panic: %s", s)
	}
	u.mu.Lock()
	u.installPanics = false
	u.mu.Unlock()
	u.states["locals/c"] = appState(t, "/sbin/init", "/bin/c", nil)
	if err := rig.sys.RunRevision("locals/c", false); err != nil {
		t.Fatalf("a run after the panic: %v", err)
	}
	u.waitStatus(t, "locals/c", storage.StatusUpdated)
}

// A shutdown that waits for the install still leaves the update for the
// next boot when root restarts after a Go panic in the meantime: the
// waiting shutdown is the install's, not root's incarnation's. Before,
// the new incarnation had forgotten it, made the transition under the
// shutdown (the new revision's containers started, to be stopped at
// once), and the shutdown waited for the handover.
func TestShutdownWaitsForTheInstallAcrossARootPanic(t *testing.T) {
	rig, gate := slowInstallRig(t)
	done := runInBackground(t, rig, "locals/b")
	stopped := shutdownInBackground(rig)
	time.Sleep(200 * time.Millisecond)                                   // root took the shutdown, and keeps it for after the install
	rig.sys.sys.Root.Send(rig.sys.root, (*messages.RevisionBooted)(nil)) // a Go panic in root
	waitStatus(t, rig.sys, allStarted)

	close(gate)
	shutdownLeftTheUpdate(t, rig, done, stopped)
}

// A system container of the factory revision that gives up during the
// install of the first update waits for it, and is then taken as the
// failure of a revision being left: the device reboots into the update,
// whose pv_try stays. Before, it was taken as a failure with no update
// under way: safe mode, which dropped the pv_try just stored while the
// update stayed INPROGRESS, so every later run and reboot through the
// control socket was refused as an update under way.
func TestFactorySystemFailureDuringTheInstall(t *testing.T) {
	rig, gate := slowInstallRigFrom(t, "0")
	u := rig.u
	done := runInBackground(t, rig, "locals/b")
	rig.sys.sys.Root.Send(rig.sys.root, &messages.RebootRequested{Reason: "sys gave up"})
	time.Sleep(100 * time.Millisecond) // root took it, and keeps it for after the install
	close(gate)
	if err := waitRun(t, done); err != nil {
		t.Fatalf("run once installed: %v", err)
	}
	t.Logf("reboot: %s", rig.waitReboot(t))
	if _, try, _ := u.Env(); try != "locals/b" {
		t.Errorf("pv_try after the install: %q; calls %q", try, u.Calls())
	}
	if n := rig.sys.Tree(); n.Status == "safe-mode" {
		t.Errorf("root in safe mode (%s) with the update installed", n.LastFailure)
	}
	want := []string{"install locals/b", "progress locals/b INPROGRESS " + storage.MsgReboot}
	if got := u.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls:\n got %q\nwant %q", got, want)
	}
}

// So during a non-reboot handover from the factory revision: a system
// container that gives up in the revision being left reboots the device
// into the update. Before, safe mode dropped the update's pv_try, and
// the handover went on to run the update that the next boot would not.
func TestFactorySystemFailureDuringAHandover(t *testing.T) {
	rig, u := inAHandoverFrom(t, "0")
	rig.sys.sys.Root.Send(rig.sys.root, &messages.RebootRequested{Reason: "sys gave up"})
	t.Logf("reboot: %s", rig.waitReboot(t))
	if _, try, _ := u.Env(); try != "locals/b" {
		t.Errorf("pv_try: %q; calls %q", try, u.Calls())
	}
	for _, name := range []string{"sys", "other"} {
		rig.e.run(name).Exit(0, 9) // the reboot takes down what was detached
	}
}

// A revision that stops during the install (a Go panic past its budget)
// leaves nothing to hand over from: the update is tried by a reboot.
func TestRevisionGoneDuringTheInstallReboots(t *testing.T) {
	rig, gate := slowInstallRig(t)
	done := runInBackground(t, rig, "locals/b")
	for range 4 { // restarted three times within a minute, then stopped
		panicRevision(rig.sys)
		time.Sleep(50 * time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(rig.sys.Tree().Children) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the revision did not stop")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(gate)
	if err := waitRun(t, done); err != nil {
		t.Fatalf("run once installed: %v", err)
	}
	t.Logf("reboot: %s", rig.waitReboot(t))
	if s, msg := rig.u.status("locals/b"); s != storage.StatusInProgress || msg != storage.MsgReboot {
		t.Errorf("progress of the update: %s %q", s, msg)
	}
}

// shutdownInBackground asks for a shutdown and returns where its result
// comes.
func shutdownInBackground(rig *updateRig) <-chan error {
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- rig.sys.Shutdown(ctx, "power button")
	}()
	return stopped
}

// shutdownLeftTheUpdate checks a run and a shutdown that waited for its
// install, now released: the run answered, the shutdown done, and the
// update left INPROGRESS for the next boot, with nothing else written.
func shutdownLeftTheUpdate(t *testing.T, rig *updateRig, done, stopped <-chan error) {
	t.Helper()
	if err := waitRun(t, done); err != nil {
		t.Fatalf("run once installed: %v", err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("shutdown after the install: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the shutdown did not go on after the install")
	}
	if s, msg := rig.u.status("locals/b"); s != storage.StatusInProgress || msg != storage.MsgReboot {
		t.Errorf("progress of the update left for the next boot: %s %q", s, msg)
	}
	want := []string{"install locals/b", "progress locals/b INPROGRESS " + storage.MsgReboot}
	if got := rig.u.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls:\n got %q\nwant %q", got, want)
	}
}

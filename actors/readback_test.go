package actors

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/internal/bltest"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
	"github.com/pantavisor/pv/update"
	"github.com/pantavisor/pv/updater"
)

// The tests here run root's update flow on the real storage and bootloader
// (updater.Device, appengine's files) whose steps return an error, stored
// or not; then the next boot (Device.Start on the plain backend) says
// what the device runs, which must agree with what was reported.

// realDevice is a storage holding revisions "1" and "2" with the
// appengine bootloader's variables env, behind a Faulty.
func realDevice(t *testing.T, env bootloader.Env, f *bltest.Faulty) *updater.Device {
	t.Helper()
	l := storage.Layout{Root: t.TempDir()}
	for _, rev := range []string{"1", "2"} {
		if err := l.InstallTrail(rev, []byte(`{"#spec":"pantavisor-service-system@1"}`), storage.InstallOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(l.Boot(), 0o755); err != nil {
		t.Fatal(err)
	}
	bl := bootloader.AppEngine{Dir: l.Boot()}
	if err := bl.Save(env); err != nil {
		t.Fatal(err)
	}
	f.Backend = bl
	return &updater.Device{Layout: l, Bootloader: f, State: state.Options{AppEngine: true},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// nextBoot is the boot after this one, with a medium that works again.
func nextBoot(t *testing.T, d *updater.Device) updater.Boot {
	t.Helper()
	f := d.Bootloader.(*bltest.Faulty)
	nd := *d
	nd.Bootloader = f.Backend
	b, err := nd.Start()
	if err != nil {
		t.Fatalf("next boot: %v", err)
	}
	return b
}

type realRig struct {
	sys     *System
	e       *fakeEngine
	d       *updater.Device
	reboots chan string
}

// startRealRig boots d (Device.Start) and runs what it decided with the
// fake engine.
func startRealRig(t *testing.T, d *updater.Device) *realRig {
	t.Helper()
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	rig := &realRig{e: newFakeEngine(), d: d, reboots: make(chan string, 4)}
	cfg := Config{Rev: b.Rev, State: appState(t, "/sbin/init", "/bin/a", nil), Trying: b.Trying, TryProgress: b.TryProgress,
		Updates: d, Engine: rig.e, NewEngine: func(string, *state.State) Engine { return rig.e },
		CommitDelay: 30 * time.Millisecond, OnReboot: func(why string) { rig.reboots <- why }}
	rig.sys = startSystemCfg(t, cfg)
	return rig
}

func (r *realRig) progress(t *testing.T, rev string) storage.Progress {
	t.Helper()
	p, err := r.d.Layout.ReadProgress(rev)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitProgress waits for rev's progress in one of want.
func (r *realRig) waitProgress(t *testing.T, rev string, want ...storage.Status) storage.Progress {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := r.progress(t, rev)
		for _, s := range want {
			if p.Status == s {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress of %s: %s %q, want %v", rev, p.Status, p.Msg, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (r *realRig) waitReboot(t *testing.T) string {
	t.Helper()
	select {
	case why := <-r.reboots:
		return why
	case <-time.After(5 * time.Second):
		t.Fatal("no reboot requested")
		return ""
	}
}

// tried are the variables of revision 2 installed over committed 1.
var tried = bootloader.Env{bootloader.VarRev: "1", bootloader.VarTry: "2"}

// A commit that reached the medium and then returned an error is a
// commit: DONE, no rollback, and the next boot runs it.
func TestCommitStoredDespiteAnErrorIsACommit(t *testing.T) {
	f := &bltest.Faulty{FailCommit: true}
	rig := startRealRig(t, realDevice(t, tried, f))
	p := rig.waitProgress(t, "2", storage.StatusDone, storage.StatusError)
	if !f.Failed() {
		t.Fatal("the commit did not fail")
	}
	if p.Status != storage.StatusDone {
		t.Errorf("progress %s %q after a commit that is stored, want DONE", p.Status, p.Msg)
	}
	time.Sleep(50 * time.Millisecond)
	if len(rig.reboots) != 0 {
		t.Errorf("rebooted after a stored commit: %q", <-rig.reboots)
	}
	if !rig.d.Layout.Done("2") {
		t.Error("no done flag")
	}
	b := nextBoot(t, rig.d)
	if b.Rev != "2" || b.Trying {
		t.Errorf("next boot runs %s (trying %v), want the committed 2", b.Rev, b.Trying)
	}
	if p := rig.progress(t, "2"); p.Status != storage.StatusDone {
		t.Errorf("after the next boot, 2's progress is %s %q while it runs committed", p.Status, p.Msg)
	}
}

// A commit that did not reach the medium fails the update as before:
// ERROR, rollback, and the next boot runs the committed revision.
func TestCommitNotStoredRollsBack(t *testing.T) {
	f := &bltest.Faulty{FailCommit: true, Skip: true}
	rig := startRealRig(t, realDevice(t, tried, f))
	p := rig.waitProgress(t, "2", storage.StatusDone, storage.StatusError)
	if p.Status != storage.StatusError || p.Msg != storage.MsgInternalError {
		t.Errorf("progress %s %q, want ERROR %q", p.Status, p.Msg, storage.MsgInternalError)
	}
	if why := rig.waitReboot(t); !strings.Contains(why, "rollback") {
		t.Errorf("reboot %q, want a rollback", why)
	}
	b := nextBoot(t, rig.d)
	if b.Rev != "1" || b.Trying {
		t.Errorf("next boot runs %s (trying %v), want the committed 1", b.Rev, b.Trying)
	}
}

// A commit whose outcome cannot be read back leaves the progress TESTING
// and the variables as they are, and reboots: the next boot settles it
// from what is stored, either way in agreement with the bootloader.
func TestCommitUnconfirmedIsSettledByTheNextBoot(t *testing.T) {
	for _, stored := range []bool{true, false} {
		t.Run(map[bool]string{true: "stored", false: "not stored"}[stored], func(t *testing.T) {
			f := &bltest.Faulty{FailCommit: true, Skip: !stored, Unreadable: true}
			rig := startRealRig(t, realDevice(t, tried, f))
			rig.waitProgress(t, "2", storage.StatusTesting)
			why := rig.waitReboot(t)
			if p := rig.progress(t, "2"); p.Status != storage.StatusTesting {
				t.Errorf("progress %s %q after an unconfirmed commit, want TESTING left (reboot %q)", p.Status, p.Msg, why)
			}
			b := nextBoot(t, rig.d)
			p := rig.progress(t, "2")
			switch {
			case stored && (b.Rev != "2" || b.Trying || p.Status != storage.StatusDone):
				t.Errorf("next boot runs %s (trying %v) with 2 %s %q, want committed 2 DONE", b.Rev, b.Trying, p.Status, p.Msg)
			case !stored && (b.Rev != "1" || p.Status != storage.StatusError):
				t.Errorf("next boot runs %s with 2 %s %q, want 1 and 2 ERROR", b.Rev, p.Status, p.Msg)
			}
		})
	}
}

// committed are the variables of a device running revision 1, no update.
var committed = bootloader.Env{bootloader.VarRev: "1"}

// A LOCAL_RUN whose pv_try reached the medium before the error is
// installed: the next boot tries it, so the run is not refused, and it
// goes by a reboot (the backend's own part may want one).
func TestInstallStoredDespiteAnErrorRuns(t *testing.T) {
	f := &bltest.Faulty{FailInstall: true}
	rig := startRealRig(t, realDevice(t, committed, f))
	waitStatus(t, rig.sys, allStarted)
	if err := rig.sys.RunRevision("2", false); err != nil {
		t.Errorf("run refused although pv_try is stored: %v", err)
	}
	if !f.Failed() {
		t.Fatal("the install did not fail")
	}
	if p, err := rig.d.Progress("2"); err != nil || p == nil || p.Status != storage.StatusInProgress {
		t.Errorf("progress %+v %v, want INPROGRESS", p, err)
	}
	rig.waitReboot(t)
	if b := nextBoot(t, rig.d); b.Rev != "2" || !b.Trying {
		t.Errorf("next boot runs %s (trying %v), want a try of 2", b.Rev, b.Trying)
	}
}

// A LOCAL_RUN whose install cannot be read back is refused, and its
// ERROR progress makes a pv_try that did reach the medium a failed try
// at the next boot: what runs is the committed revision, as reported.
func TestInstallUnconfirmedIsRefusedAndNotTried(t *testing.T) {
	f := &bltest.Faulty{FailInstall: true, Unreadable: true}
	rig := startRealRig(t, realDevice(t, committed, f))
	waitStatus(t, rig.sys, allStarted)
	if err := rig.sys.RunRevision("2", false); err == nil {
		t.Error("run accepted although its install is unknown")
	}
	if len(rig.reboots) != 0 {
		t.Errorf("rebooted: %q", <-rig.reboots)
	}
	b := nextBoot(t, rig.d)
	if b.Action != update.BootRollback || b.Rev != "2" {
		t.Errorf("next boot %s of %s, want the stored try of 2 rolled back", b.Action, b.Rev)
	}
	if b := nextBoot(t, rig.d); b.Rev != "1" || b.Trying {
		t.Errorf("the boot after runs %s (trying %v), want 1", b.Rev, b.Trying)
	}
}

// A LOCAL_RUN on a device whose bootloader is unusable (safe mode) is
// refused with an error that wraps bootloader.ErrUnusable and the
// reason, for ctrl to say why, and nothing is written to the revision's
// progress. The refusal came from reading the variables (Revisions),
// whose error went on as text only: ctrl answered "Internal error".
func TestRunRefusedByAnUnusableBootloader(t *testing.T) {
	l := storage.Layout{Root: t.TempDir()}
	for _, rev := range []string{"1", "2"} {
		if err := l.InstallTrail(rev, []byte(`{"#spec":"pantavisor-service-system@1"}`), storage.InstallOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	why := errors.New(`new bootloader: unknown bootloader type "uboot-ab"`)
	d := &updater.Device{Layout: l, Bootloader: bootloader.Unusable{Err: why}, State: state.Options{AppEngine: true},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	reboots := make(chan string, 1)
	sys := startSystemCfg(t, Config{Rev: "1", Updates: d, Engine: newFakeEngine(),
		OnReboot: func(why string) { reboots <- why }})
	err := sys.RunRevision("2", false)
	if !errors.Is(err, bootloader.ErrUnusable) || !errors.Is(err, why) || errors.Is(err, bootloader.ErrUnconfirmed) {
		t.Errorf("run on an unusable bootloader: %v, want it refused naming why", err)
	}
	if p, err := d.Progress("2"); p != nil || err != nil {
		t.Errorf("progress of the refused revision %+v, %v; want none written", p, err)
	}
	if len(reboots) != 0 {
		t.Errorf("rebooted: %q", <-reboots)
	}
}

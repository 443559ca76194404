package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
	"github.com/pantavisor/pv/update"
)

// fakeUpdates keeps the storage and bootloader of root's update flow in
// memory and records the calls in order; the real ones are storage's and
// bootloader's, tested against the disk and the real tools, and the whole
// flow runs on them in the integration tests.
type fakeUpdates struct {
	mu       sync.Mutex
	states   map[string]*state.State
	progress map[string]storage.Progress
	recorder
	rev, try string
	// installGate, when set, holds every Install until it is closed,
	// after telling installStarted (an install on a slow medium);
	// installPanics makes Install panic.
	installGate    chan struct{}
	installStarted chan string
	installPanics  bool
}

func newFakeUpdates(committed string) *fakeUpdates {
	return &fakeUpdates{states: map[string]*state.State{}, progress: map[string]storage.Progress{}, rev: committed}
}

func (u *fakeUpdates) call(c string) { u.record(c) }

// Calls are the storage and bootloader calls so far, in order.
func (u *fakeUpdates) Calls() []string { return u.Events() }

func (u *fakeUpdates) Load(rev string) (*state.State, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	st, ok := u.states[rev]
	if !ok {
		return nil, fmt.Errorf("load %s: %w", rev, fs.ErrNotExist)
	}
	return st, nil
}

func (u *fakeUpdates) Progress(rev string) (*storage.Progress, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	p, ok := u.progress[rev]
	if !ok {
		return nil, nil
	}
	return &p, nil
}

func (u *fakeUpdates) WriteProgress(rev string, p storage.Progress) error {
	u.mu.Lock()
	u.progress[rev] = p
	u.mu.Unlock()
	u.call("progress " + rev + " " + string(p.Status) + " " + p.Msg)
	return nil
}

func (u *fakeUpdates) MarkDone(rev string) error   { u.call("done " + rev); return nil }
func (u *fakeUpdates) SetCurrent(rev string) error { u.call("current " + rev); return nil }

func (u *fakeUpdates) Install(rev string) (bool, error) {
	if u.installGate != nil {
		u.installStarted <- rev
		<-u.installGate
	}
	u.mu.Lock()
	if u.installPanics {
		u.mu.Unlock()
		panic("install of " + rev)
	}
	u.try = rev
	u.mu.Unlock()
	u.call("install " + rev)
	return false, nil
}

func (u *fakeUpdates) Commit(rev string) error {
	u.mu.Lock()
	u.rev, u.try = rev, ""
	u.mu.Unlock()
	u.call("commit " + rev)
	return nil
}

func (u *fakeUpdates) Fail() error {
	u.mu.Lock()
	u.try = ""
	u.mu.Unlock()
	u.call("fail")
	return nil
}

func (u *fakeUpdates) Env() (string, string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rev, u.try, nil
}

// status returns rev's progress status and message.
func (u *fakeUpdates) status(rev string) (storage.Status, string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	p := u.progress[rev]
	return p.Status, p.Msg
}

func (u *fakeUpdates) waitStatus(t *testing.T, rev string, want storage.Status) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, msg := u.status(rev)
		if s == want {
			return msg
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress of %s: %s %q, want %s; calls %v", rev, s, msg, want, u.Calls())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// appState is a revision of a system container "sys" and two container
// ones, "app" and "other"; sysExec and appExec (in a JSON document each
// container owns) make a container differ between revisions.
func appState(t *testing.T, sysExec, appExec string, app map[string]any) *state.State {
	t.Helper()
	return parseState(t, appDoc(sysExec, appExec, app))
}

// appDoc is appState's state document.
func appDoc(sysExec, appExec string, app map[string]any) map[string]any {
	doc := oneContainerDoc(app)
	doc["sys/run.json"] = map[string]any{"name": "sys", "group": "core"}
	doc["sys/conf.json"] = map[string]any{"exec": sysExec}
	doc["app/conf.json"] = map[string]any{"exec": appExec}
	doc["other/run.json"] = map[string]any{"name": "other", "group": "apps"}
	return doc
}

// updateRig is a running tree with update storage.
type updateRig struct {
	sys     *System
	e       *fakeEngine
	u       *fakeUpdates
	reboots chan string
}

func startUpdateRig(t *testing.T, cfg Config, u *fakeUpdates) *updateRig {
	t.Helper()
	rig := &updateRig{e: newFakeEngine(), u: u, reboots: make(chan string, 4)}
	if cfg.Rev == "" {
		cfg.Rev = "1"
	}
	cfg.Engine, cfg.Updates = rig.e, u
	cfg.NewEngine = func(string, *state.State) Engine { return rig.e }
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.CommitDelay == 0 {
		cfg.CommitDelay = 30 * time.Millisecond
	}
	cfg.OnReboot = func(why string) { rig.reboots <- why }
	rig.sys = startSystemCfg(t, cfg)
	return rig
}

// tryingRig runs revision "2" (rev "0" with factory) as a try with its
// INPROGRESS progress, committed "1" ("0"), app of policy "no", and no
// commit before the test's end.
func tryingRig(t *testing.T, factory bool) (*updateRig, *fakeUpdates, string) {
	t.Helper()
	if factory {
		return tryingRigOf(t, "0", "0")
	}
	return tryingRigOf(t, "2", "1")
}

// tryingRigOf runs rev under test with committed as the bootloader's
// committed revision.
func tryingRigOf(t *testing.T, rev, committed string) (*updateRig, *fakeUpdates, string) {
	t.Helper()
	u := newFakeUpdates(committed)
	p := storage.NewProgress(storage.StatusInProgress, storage.MsgTry)
	rig := startUpdateRig(t, Config{Rev: rev, State: appState(t, "/sbin/init", "/bin/a",
		map[string]any{"auto_recovery": map[string]any{"policy": "no"}}), Trying: true, TryProgress: &p,
		CommitDelay: time.Hour}, u)
	u.waitStatus(t, rev, storage.StatusTesting)
	return rig, u, rev
}

func (r *updateRig) pids(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	cs, err := r.sys.Containers()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		out[c.Name] = c.Pid
	}
	return out
}

func (r *updateRig) waitReboot(t *testing.T) string {
	t.Helper()
	select {
	case why := <-r.reboots:
		return why
	case <-time.After(5 * time.Second):
		t.Fatalf("no reboot requested; calls %v", r.u.Calls())
		return ""
	}
}

// transitionCalls are the storage and bootloader calls of a non-reboot
// update to rev, from its install to UPDATED.
func transitionCalls(rev string) []string {
	return []string{
		"install " + rev,
		"progress " + rev + " INPROGRESS " + storage.MsgTransition,
		"current " + rev,
		"progress " + rev + " TESTING " + storage.MsgTestingNonReboot,
		"progress " + rev + " UPDATED " + storage.MsgUpdated,
	}
}

var allStarted = map[string]messages.Status{"sys": messages.StatusStarted, "app": messages.StatusStarted, "other": messages.StatusStarted}

func TestNonRebootUpdateSwapsOnlyTheChangedContainer(t *testing.T) {
	u := newFakeUpdates("1")
	rig := startUpdateRig(t, Config{State: appState(t, "/sbin/init", "/bin/a", nil)}, u)
	waitStatus(t, rig.sys, allStarted)
	before := rig.pids(t)
	u.states["locals/b"] = appState(t, "/sbin/init", "/bin/b", nil)

	if err := rig.sys.RunRevision("locals/b", false); err != nil {
		t.Fatal(err)
	}
	if s, msg := u.status("locals/b"); s != storage.StatusInProgress && s != storage.StatusTesting && s != storage.StatusUpdated {
		t.Fatalf("after LOCAL_RUN: %s %q", s, msg)
	}
	if msg := u.waitStatus(t, "locals/b", storage.StatusUpdated); msg != storage.MsgUpdated {
		t.Errorf("UPDATED message %q", msg)
	}
	after := rig.pids(t)
	if after["sys"] != before["sys"] || after["other"] != before["other"] {
		t.Errorf("kept containers changed pids: before %v after %v", before, after)
	}
	if after["app"] == before["app"] || after["app"] == 0 {
		t.Errorf("app was not restarted: before %v after %v", before, after)
	}
	if n := countEvents(rig.e, "start other") + countEvents(rig.e, "stop other") + countEvents(rig.e, "stop sys"); n != 1 {
		t.Errorf("kept containers stopped or started again: %v", rig.e.Events())
	}
	if countEvents(rig.e, "stop app") != 1 || countEvents(rig.e, "start app") != 2 {
		t.Errorf("app not swapped once: %v", rig.e.Events())
	}
	// The previous revision's engine lets go of its images.
	waitEvents(t, rig.e, "close engine", 1, 2*time.Second)
	want := transitionCalls("locals/b")
	if got := u.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls:\n got %q\nwant %q", got, want)
	}
	revs, err := rig.sys.Revisions()
	if err != nil || revs.Running != "locals/b" || revs.Updating || revs.Tried != "locals/b" {
		t.Errorf("revisions %+v %v", revs, err)
	}
	// The new revision runs the kept containers: they can be managed.
	if err := rig.sys.ContainerAction("other", "restart"); err != nil {
		t.Errorf("restart a kept container: %v", err)
	}
	waitStatus(t, rig.sys, allStarted)
	if rig.pids(t)["other"] == before["other"] {
		t.Error("restart of a kept container did not restart it")
	}
}

func TestUpdateOfSystemContainerReboots(t *testing.T) {
	u := newFakeUpdates("1")
	rig := startUpdateRig(t, Config{State: appState(t, "/sbin/init", "/bin/a", nil)}, u)
	waitStatus(t, rig.sys, allStarted)
	u.states["2"] = appState(t, "/sbin/init2", "/bin/a", nil)
	if err := rig.sys.RunRevision("2", false); err != nil {
		t.Fatal(err)
	}
	why := rig.waitReboot(t)
	if s, msg := u.status("2"); s != storage.StatusInProgress || msg != storage.MsgReboot {
		t.Errorf("progress %s %q (reboot %q)", s, msg, why)
	}
	if got := u.Calls(); !slices.Equal(got, []string{"install 2", "progress 2 INPROGRESS " + storage.MsgReboot}) {
		t.Errorf("calls %q", got)
	}
	if err := rig.sys.RunRevision("2", false); !errors.Is(err, update.ErrUpdateOngoing) {
		t.Errorf("a second run while the first is INPROGRESS: %v", err)
	}
}

func TestRunCommitAlwaysReboots(t *testing.T) {
	u := newFakeUpdates("1")
	rig := startUpdateRig(t, Config{State: appState(t, "/sbin/init", "/bin/a", nil)}, u)
	waitStatus(t, rig.sys, allStarted)
	u.states["locals/b"] = appState(t, "/sbin/init", "/bin/b", nil)
	if err := rig.sys.RunRevision("locals/b", true); err != nil {
		t.Fatal(err)
	}
	rig.waitReboot(t)
	if countEvents(rig.e, "stop app") != 0 {
		t.Errorf("LOCAL_RUN_COMMIT swapped a container: %v", rig.e.Events())
	}
}

func TestRunRefusals(t *testing.T) {
	u := newFakeUpdates("1")
	checked := map[string]bool{}
	rig := startUpdateRig(t, Config{State: appState(t, "/sbin/init", "/bin/a", nil),
		CheckRevision: func(rev string, st *state.State) error {
			checked[rev] = true
			if rev == "locals/unrunnable" {
				return errors.New("translate container app: unsupported cgroup settings")
			}
			return nil
		}}, u)
	waitStatus(t, rig.sys, allStarted)
	if err := rig.sys.RunRevision("locals/nothing", false); !errors.Is(err, update.ErrUnknownRevision) {
		t.Errorf("unknown revision: %v", err)
	}
	if err := rig.sys.RunRevision("../etc", false); !errors.Is(err, update.ErrInvalidRevision) {
		t.Errorf("bad name: %v", err)
	}
	// A revision that validates but that the runtime refuses.
	u.states["locals/unrunnable"] = appState(t, "/sbin/init", "/bin/b", nil)
	if err := rig.sys.RunRevision("locals/unrunnable", false); !errors.Is(err, update.ErrInvalidRevision) ||
		!strings.Contains(err.Error(), "unsupported cgroup settings") {
		t.Errorf("a revision the runtime refuses: %v", err)
	}
	if !checked["locals/unrunnable"] || len(checked) != 1 {
		t.Errorf("checked %v: want the one revision that loaded", checked)
	}
	if len(u.Calls()) != 0 {
		t.Errorf("a refused run wrote: %q", u.Calls())
	}
}

func TestTriedRevisionCommitsAfterTheDelay(t *testing.T) {
	u := newFakeUpdates("1")
	p := storage.NewProgress(storage.StatusInProgress, storage.MsgTry)
	rig := startUpdateRig(t, Config{Rev: "2", State: appState(t, "/sbin/init", "/bin/a", nil), Trying: true, TryProgress: &p}, u)
	if msg := u.waitStatus(t, "2", storage.StatusDone); msg != storage.MsgDone {
		t.Errorf("DONE message %q", msg)
	}
	want := []string{
		"progress 2 TESTING " + storage.MsgTestingReboot,
		"commit 2",
		"progress 2 DONE " + storage.MsgDone,
		"done 2",
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(u.Calls()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if got := u.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls:\n got %q\nwant %q", got, want)
	}
	// Committed: a container that gives up now is not a rollback.
	rig.e.run("app").Exit(1, 0)
	time.Sleep(50 * time.Millisecond)
	if s, _ := u.status("2"); s != storage.StatusDone || len(rig.reboots) != 0 {
		t.Errorf("after commit, a failure changed the update: %s, reboots %d", s, len(rig.reboots))
	}
}

// The commit delay is read when the timer is armed, from Tunables: a
// PV_UPDATER_COMMIT_DELAY the control socket changed (user-meta) holds
// for the next try, where a copy made at boot ignored it.
func TestCommitDelayIsReadWhenTheTimerIsArmed(t *testing.T) {
	var delay atomic.Int64
	delay.Store(int64(time.Hour))
	u := newFakeUpdates("1")
	p := storage.NewProgress(storage.StatusInProgress, storage.MsgTry)
	delay.Store(int64(20 * time.Millisecond)) // changed after boot
	startUpdateRig(t, Config{Rev: "2", State: appState(t, "/sbin/init", "/bin/a", nil), Trying: true, TryProgress: &p,
		CommitDelay: time.Hour,
		Tunables: func() Tunables {
			return Tunables{CommitDelay: time.Duration(delay.Load()), MaxRecoveryDelay: time.Minute}
		}}, u)
	u.waitStatus(t, "2", storage.StatusDone)
}

func TestTriedRevisionRollsBackWhenAContainerGivesUp(t *testing.T) {
	rig, u, _ := tryingRig(t, false)
	rig.e.run("app").Exit(1, 0)
	why := rig.waitReboot(t)
	if msg := u.waitStatus(t, "2", storage.StatusError); msg != storage.MsgContainerFailed {
		t.Errorf("ERROR message %q", msg)
	}
	calls := u.Calls()
	if i, j := slices.Index(calls, "progress 2 ERROR "+storage.MsgContainerFailed), slices.Index(calls, "fail"); i < 0 || j < i {
		t.Errorf("the failure must be recorded before pv_try is cleared: %q", calls)
	}
	if slices.Contains(calls, "commit 2") {
		t.Errorf("committed a failed update: %q", calls)
	}
	if why == "" {
		t.Error("reboot without a reason")
	}
}

func TestTriedRevisionRollsBackOnGoalTimeout(t *testing.T) {
	u := newFakeUpdates("1")
	p := storage.NewProgress(storage.StatusInProgress, storage.MsgTry)
	st := threeGroups(t, 1) // "a1", "a2" wait for READY for 1 s
	rig := startUpdateRig(t, Config{Rev: "2", State: st, Trying: true, TryProgress: &p}, u)
	rig.waitReboot(t)
	if msg := u.waitStatus(t, "2", storage.StatusError); msg != storage.MsgStatusGoalFailed {
		t.Errorf("ERROR message %q", msg)
	}
}

func TestFailingFactoryTryEntersSafeMode(t *testing.T) {
	rig, u, _ := tryingRig(t, true)
	rig.e.run("app").Exit(1, 0)
	u.waitStatus(t, "0", storage.StatusError)
	deadline := time.Now().Add(5 * time.Second)
	for rig.sys.Tree().Status != "safe-mode" {
		if time.Now().After(deadline) {
			t.Fatalf("root %+v", rig.sys.Tree())
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitEvents(t, rig.e, "stop sys", 1, 5*time.Second)
	if len(rig.reboots) != 0 {
		t.Error("safe mode rebooted")
	}
	// The way out of safe mode is an update: it reboots into it.
	u.states["locals/fix"] = appState(t, "/sbin/init", "/bin/fixed", nil)
	if err := rig.sys.RunRevision("locals/fix", false); err != nil {
		t.Fatal(err)
	}
	if why := rig.waitReboot(t); !strings.Contains(why, "locals/fix") {
		t.Errorf("reboot %q", why)
	}
}

// The factory revision run again (LOCAL_RUN of "0") while another
// revision is committed has that one to fall back to: its failure rolls
// back, as any try's does. Safe mode is for a factory revision with
// nothing to roll back to; there it stopped every container until a power
// cycle, with a working revision committed.
func TestFailingFactoryTryRollsBackToTheCommittedRevision(t *testing.T) {
	rig, u, _ := tryingRigOf(t, "0", "3")
	rig.e.run("app").Exit(1, 0)
	rig.waitReboot(t)
	if msg := u.waitStatus(t, "0", storage.StatusError); msg != storage.MsgContainerFailed {
		t.Errorf("ERROR message %q", msg)
	}
	if calls := u.Calls(); !slices.Contains(calls, "fail") {
		t.Errorf("pv_try not cleared: %q", calls)
	}
	if s := rig.sys.Tree().Status; s == "safe-mode" {
		t.Errorf("root %s", s)
	}
}

func TestPowerRefusedDuringTest(t *testing.T) {
	rig, _, _ := tryingRig(t, false)
	if err := rig.sys.Power(false, "now"); !errors.Is(err, update.ErrUpdateOngoing) {
		t.Errorf("reboot during the test: %v", err)
	}
	revs, err := rig.sys.Revisions()
	if err != nil || !revs.Updating || revs.Running != "2" {
		t.Errorf("revisions %+v %v", revs, err)
	}
}

// A kept container that is waiting for a recovery retry is not handed
// over half-way: it is stopped with the changed ones and the next
// revision starts it afresh.
func TestHandoverOfARecoveringContainerStartsItAfresh(t *testing.T) {
	u := newFakeUpdates("1")
	slowRetry := map[string]any{"auto_recovery": map[string]any{"policy": "always", "retry_delay": 30}}
	rig := startUpdateRig(t, Config{State: appState(t, "/sbin/init", "/bin/a", slowRetry)}, u)
	waitStatus(t, rig.sys, allStarted)
	// other is the changed one; app, unchanged, is waiting 30 s to retry.
	next := appDoc("/sbin/init", "/bin/a", slowRetry)
	next["other/conf.json"] = map[string]any{"exec": "/bin/other2"}
	u.states["locals/b"] = parseState(t, next)
	rig.e.run("app").Exit(1, 0)
	waitStatus(t, rig.sys, map[string]messages.Status{"app": messages.StatusRecovering})
	if err := rig.sys.RunRevision("locals/b", false); err != nil {
		t.Fatal(err)
	}
	u.waitStatus(t, "locals/b", storage.StatusUpdated)
	waitStatus(t, rig.sys, allStarted)
	if n := countEvents(rig.e, "start app"); n != 2 {
		t.Errorf("app started %d times, want 2 (the boot, then afresh by the next revision): %v", n, rig.e.Events())
	}
}

// A shutdown that arrives during a handover stops every container: those
// the next revision took over too.
func TestShutdownDuringHandoverStopsEverything(t *testing.T) {
	u := newFakeUpdates("1")
	rig := startUpdateRig(t, Config{State: appState(t, "/sbin/init", "/bin/a", nil)}, u)
	waitStatus(t, rig.sys, allStarted)
	rig.e.mu.Lock()
	rig.e.slowDestroy["app"] = 200 * time.Millisecond // the handover waits for app's stop
	rig.e.mu.Unlock()
	u.states["locals/b"] = appState(t, "/sbin/init", "/bin/b", nil)
	if err := rig.sys.RunRevision("locals/b", false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rig.sys.Shutdown(ctx, "during the handover"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sys", "other"} {
		if n := countEvents(rig.e, "stop "+name); n != 1 {
			t.Errorf("%s stopped %d times: %v", name, n, rig.e.Events())
		}
	}
	if n := countEvents(rig.e, "start app") - countEvents(rig.e, "stop app"); n != 0 {
		t.Errorf("app runs left: %v", rig.e.Events())
	}
}

// A changed container whose stop does not end (its teardown stuck on the
// kernel: an unmount whose sync waits on a dying disk) holds the handover
// up: the transition is given up for a reboot within HandoverTimeout,
// with the update still INPROGRESS, so that the boot after the reboot
// (which ends the stuck container) tries it. Before, the device stayed in
// the transition for good: updates and reboots through the control
// socket refused as an update under way, the watchdog kicked.
func TestHandoverThatDoesNotEndReboots(t *testing.T) {
	u := newFakeUpdates("1")
	rig := startUpdateRig(t, Config{State: appState(t, "/sbin/init", "/bin/a", nil), HandoverTimeout: 300 * time.Millisecond}, u)
	waitStatus(t, rig.sys, allStarted)
	release := make(chan struct{})
	rig.e.mu.Lock()
	rig.e.stuckStop["app"] = release
	rig.e.mu.Unlock()
	u.states["locals/b"] = appState(t, "/sbin/init", "/bin/b", nil)
	if err := rig.sys.RunRevision("locals/b", false); err != nil {
		t.Fatal(err)
	}
	why := rig.waitReboot(t)
	if !strings.Contains(why, "locals/b") || !strings.Contains(why, "did not hand over") {
		t.Errorf("reboot %q does not say the transition to locals/b was given up", why)
	}
	if s, msg := u.status("locals/b"); s != storage.StatusInProgress {
		t.Errorf("progress %s %q, want INPROGRESS for the next boot to try it", s, msg)
	}
	// Once the stuck stop ends, the device's own stop is not held up by
	// the handover given up.
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rig.sys.Shutdown(ctx, "the reboot"); err != nil {
		t.Errorf("shutdown after the handover was given up: %v", err)
	}
	// What the revision had handed over, no actor owns: the reboot ends
	// it.
	for _, name := range []string{"sys", "other"} {
		rig.e.run(name).Exit(0, 9)
	}
}

// A container kept through non-reboot updates is watched by one goroutine,
// not one more per update: each revision's actor ends its watch when it
// stops (the soak of the reliability suite found them piling up).
func TestKeptContainerWatchesDoNotPileUp(t *testing.T) {
	u := newFakeUpdates("1")
	rig := startUpdateRig(t, Config{State: appState(t, "/sbin/init", "/bin/a0", nil)}, u)
	waitStatus(t, rig.sys, allStarted)
	update := func(i int) {
		t.Helper()
		rev := fmt.Sprintf("locals/u%d", i)
		u.mu.Lock()
		u.states[rev] = appState(t, "/sbin/init", fmt.Sprintf("/bin/a%d", i), nil)
		u.mu.Unlock()
		if err := rig.sys.RunRevision(rev, false); err != nil {
			t.Fatal(err)
		}
		u.waitStatus(t, rev, storage.StatusUpdated)
		waitStatus(t, rig.sys, allStarted)
	}
	update(1)
	update(2)
	settle := func() int {
		// Goroutines of stopped actors end asynchronously.
		n := runtime.NumGoroutine()
		for i := 0; i < 50; i++ {
			time.Sleep(20 * time.Millisecond)
			n = min(n, runtime.NumGoroutine())
		}
		return n
	}
	before := settle()
	for i := 3; i <= 12; i++ {
		update(i)
	}
	if after := settle(); after > before+2 {
		t.Errorf("goroutines grew from %d to %d over 10 non-reboot updates", before, after)
	}
	// The kept container's exit still reaches the revision that runs it.
	old := rig.pids(t)["other"]
	rig.e.run("other").Exit(1, 0)
	deadline := time.Now().Add(5 * time.Second)
	for {
		cs, err := rig.sys.Containers()
		if err == nil {
			for _, c := range cs {
				if c.Name == "other" && (c.Status != messages.StatusStarted || c.Pid != old) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exit of kept container other (pid %d) went unnoticed: %+v", old, cs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A container whose stop's teardown is still under way when a non-reboot
// update hands over is not handed over (the teardown reports to the old
// actor): the old revision lets the stop end. Before, the update stayed
// INPROGRESS for good. The next revision makes the container anew, and,
// as the stop came through the API, leaves it STOPPED until the API
// starts it.
func TestHandoverOfAContainerBeingStoppedEndsStopped(t *testing.T) {
	u := newFakeUpdates("1")
	rig := startUpdateRig(t, Config{State: appState(t, "/sbin/init", "/bin/a", nil)}, u)
	waitStatus(t, rig.sys, allStarted)
	rig.e.mu.Lock()
	rig.e.slowDestroy["other"] = 300 * time.Millisecond
	rig.e.mu.Unlock()
	if err := rig.sys.ContainerAction("other", "stop"); err != nil {
		t.Fatal(err)
	}
	waitEvents(t, rig.e, "stop other", 1, 2*time.Second) // the teardown is under way
	u.states["locals/b"] = appState(t, "/sbin/init", "/bin/b", nil)
	if err := rig.sys.RunRevision("locals/b", false); err != nil {
		t.Fatal(err)
	}
	u.waitStatus(t, "locals/b", storage.StatusUpdated)
	stayStopped(t, rig.sys, rig.e, "other", 1)
	rig.e.mu.Lock()
	alive, mounted := rig.e.alive["other"], rig.e.mounted["other"]
	rig.e.mu.Unlock()
	if alive != 1 || mounted != 1 {
		t.Errorf("other has %d runs and %d mounts alive, want 1 and 1: %v", alive, mounted, rig.e.Events())
	}
}

// Container actions asked while a non-reboot update switches from one
// revision actor to the next are all answered: root holds those that come
// while the old one stops and passes them to the new one, and the old one
// serves what was queued for it before it stops. Before, a request that
// reached the old revision as it stopped was dropped without a reply and
// its client waited out the minute (TestUpdateInterleavings found it).
func TestActionsDuringATransitionAreAnswered(t *testing.T) {
	u := newFakeUpdates("1")
	rig := startUpdateRig(t, Config{State: appState(t, "/sbin/init", "/bin/a", nil)}, u)
	waitStatus(t, rig.sys, allStarted)
	u.states["locals/b"] = appState(t, "/sbin/init", "/bin/b", nil)
	stop := make(chan struct{})
	slow := make(chan string, 100)
	var asked atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				done := make(chan error, 1)
				go func() { done <- rig.sys.ContainerAction("other", "start") }()
				asked.Add(1)
				select {
				case <-done:
				case <-time.After(3 * time.Second):
					slow <- "a start of other was not answered within 3s"
					return
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := rig.sys.RunRevision("locals/b", false); err != nil {
		t.Fatal(err)
	}
	u.waitStatus(t, "locals/b", storage.StatusUpdated)
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(slow)
	for s := range slow {
		t.Error(s)
	}
	t.Logf("%d actions asked", asked.Load())
}

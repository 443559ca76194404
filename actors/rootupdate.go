package actors

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
	"github.com/pantavisor/pv/update"
)

// Root carries out the update flow that package update decides: it owns
// the device's storage and bootloader (Config.Updates), installs a
// revision on LOCAL_RUN, makes the transition (a reboot, or a handover to
// a new revision actor), runs the try/commit loop of the revision under
// test, and commits or rolls back. The order of its writes is the one
// update's doc comments ask for, so that a crash between any two of them
// is resolved by update.Resume at the next boot.

// rootUpdate is root's update state. Like cfg, it outlives root's
// incarnations: a root restarted after a Go panic goes on with the
// revision a non-reboot update started, not the one the device booted.
type rootUpdate struct {
	try  *tryRun
	next *pendingRun
	// leaving is why a reboot or power-off was requested, "" before.
	leaving string
	// safeMode is why the revision was stopped for safe mode.
	safeMode string
	// backing are the revisions other than the running one whose engines
	// made the mounts of containers kept running (see backing).
	backing []string
	held    heldStops
	// installing is the Install under way, off root's Receive.
	installing *installRun
}

// heldStops is the running revision's containers stopped through the
// API (revisionActor.held). It is kept here, where it outlives both root's
// incarnations and the revision actor's: a restart of either after a Go
// panic makes the revision actor anew, which must not start them. Root
// only hands the map to each revision actor it spawns; the actor alone
// reads and changes it.
type heldStops struct {
	rev   string
	names map[string]bool
}

// of returns the set for rev: from's, for a revision taken over (a
// handover, or an adoption by a supervisor started again), else the one
// kept, or a fresh one for another revision.
func (h *heldStops) of(rev string, from *handover) map[string]bool {
	if from != nil || h.rev != rev || h.names == nil {
		h.rev, h.names = rev, map[string]bool{}
		if from != nil {
			maps.Copy(h.names, from.held)
		}
	}
	return h.names
}

// tryRun is the update under test.
type tryRun struct {
	rev      string
	progress storage.Progress
	// reboot: the revision came up by a reboot (committed when the test
	// passes), not by a non-reboot transition (UPDATED, not committed).
	reboot bool
	// gen tags the commit timer: a commitDue of another generation is
	// stale.
	gen int
	// resumed: a supervisor started again took the try over (adopt.go);
	// a TESTING one lost its commit timer with the previous supervisor.
	resumed bool
}

// commitDue fires when the commit delay of a TESTING revision is over.
type commitDue struct{ gen int }

// pendingRun is a non-reboot transition under way: the running revision
// is handing over to rev.
type pendingRun struct {
	rev    string
	st     *state.State
	reason string
	// from is the handover, once the running revision answered.
	from *handover
}

// updating says an update is under test: INPROGRESS or TESTING, or a
// transition under way.
func (a *rootActor) updating() bool {
	u := a.up
	return u.installing != nil || u.next != nil || (u.try != nil && update.Ongoing(&u.try.progress))
}

// runRevision asks root to start an update to Rev (System.RunRevision:
// POST /commands LOCAL_RUN; LOCAL_RUN_COMMIT with Commit). State is Rev's
// state, loaded and validated by the caller, off the actor tree: loading
// may hash objects. Root answers with messages.RunResult once the update
// is installed (pv_try set, progress INPROGRESS written), before the
// transition. It is the actors' own message, not one of package
// messages: that package stays free of state, for pvcontrol to import.
type runRevision struct {
	Rev   string
	State *state.State
	// Commit forces a reboot transition (upstream's LOCAL_RUN_COMMIT).
	Commit bool
}

// runRevision (the method) is POST /commands LOCAL_RUN: install rev (pv_try, then the
// INPROGRESS progress: a crash between them boots rev as a try, which
// writes its own), answer, then make the transition.
//
// The install runs in a goroutine of its own, and root goes on (see
// installRun); installed carries on from its result.
func (a *rootActor) runRevision(ctx actor.Context, m *runRevision) {
	refuse := func(err error) { ctx.Respond(&messages.RunResult{Err: err}) }
	cfg, u := a.cfg, a.up
	switch {
	case cfg.Updates == nil:
		refuse(fmt.Errorf("run %s: %w", m.Rev, ErrNoUpdates))
		return
	case a.updating() || a.shutdown != nil || u.leaving != "":
		refuse(fmt.Errorf("run %s: %w", m.Rev, update.ErrUpdateOngoing))
		return
	case m.State == nil:
		refuse(fmt.Errorf("run %s: %w: no state", m.Rev, update.ErrInvalidRevision))
		return
	}
	t := update.Diff(cfg.State, m.State)
	switch {
	case m.Commit && !t.Reboot:
		t.Reboot, t.Reason = true, "LOCAL_RUN_COMMIT asks for a reboot"
	case !t.Reboot && (cfg.NewEngine == nil || a.rev == nil || u.safeMode != ""):
		t.Reboot, t.Reason = true, "no running revision to hand over from"
	}
	in := &installRun{run: m, t: t, asker: ctx.Sender()}
	u.installing = in
	cfg.Log.Info("installing update", "rev", m.Rev)
	in.start(cfg.Updates, ctx.ActorSystem(), ctx.Self())
}

// installRun is an Install under way. An install writes the bootloader's
// variables, and on rpiab a boot image onto the try partition: on an SD
// card that takes seconds to minutes, and root must keep answering
// meanwhile, the watchdog's probe first (a root silent for one watchdog
// timeout resets the board, in the middle of the install, at every try).
// So Install runs in a goroutine, and root treats the run as an update
// under way until installed arrives: another run and a reboot or power-off
// through the control socket are refused, and a shutdown waits for it
// (the install's writes are not cut by the unmounts). Nothing else of
// root's writes the bootloader's variables meanwhile: the writers are the
// try/commit loop, which no update under way leaves running, and a
// system container's failure, which waits too (deferred).
type installRun struct {
	run   *runRevision
	t     update.Transition
	asker *actor.PID // the run's sender, answered once installed
	// deferred are the messages that would write the variables or stop
	// the device, received while the install runs; root takes them
	// again after it, in order. They are kept here, with their senders,
	// as a root restarted after a Go panic goes on with the install.
	deferred []heldRequest
}

// installed is an install's result.
type installed struct {
	in     *installRun
	reboot bool
	err    error
}

// start runs the install and sends its result to root, a panic included:
// an install that never answered would leave every later update refused.
func (in *installRun) start(up Updates, sys *actor.ActorSystem, root *actor.PID) {
	go func() {
		res := &installed{in: in}
		defer func() {
			if p := recover(); p != nil {
				// Whether it stored pv_try is unknown: as when the
				// variables cannot be read back.
				res.reboot, res.err = false, fmt.Errorf("install panicked: %v: %w", p, bootloader.ErrUnconfirmed)
			}
			sys.Root.Send(root, res)
		}()
		res.reboot, res.err = up.Install(in.run.Rev)
	}()
}

// installed carries on with the run whose install ended: the INPROGRESS
// progress, the answer, then the transition. A shutdown asked for
// meanwhile goes on after it, the update left for the next boot to try.
func (a *rootActor) installed(ctx actor.Context, res *installed) {
	in, cfg, u := res.in, a.cfg, a.up
	if u.installing != in {
		return
	}
	u.installing = nil
	defer a.takeDeferred(ctx, in)
	m, t := in.run, in.t
	answer := func(err error) {
		if in.asker != nil {
			ctx.Send(in.asker, &messages.RunResult{Err: err})
		}
	}
	if res.err != nil {
		a.installFailed(m.Rev, res.err)
		answer(fmt.Errorf("run %s: %w", m.Rev, res.err))
		return
	}
	if res.reboot && !t.Reboot {
		t.Reboot, t.Reason = true, "the bootloader starts it only by a reboot"
	}
	waitingShutdown, waitingFailure := in.waiting()
	shuttingDown := a.shutdown != nil || waitingShutdown
	switch {
	case t.Reboot:
	case shuttingDown:
		t.Reboot, t.Reason = true, "the device is shutting down: the next boot tries it"
	case waitingFailure:
		// The system container failed in the revision being left: the
		// reboot it asks for tries the update.
		t.Reboot, t.Reason = true, "a system container gave up during the install"
	case a.rev == nil || u.safeMode != "":
		// Root went on during the install: the revision may have
		// stopped meanwhile (a Go panic past its budget).
		t.Reboot, t.Reason = true, "no running revision to hand over from"
	}
	msg := storage.MsgTransition
	if t.Reboot {
		msg = storage.MsgReboot
	}
	p := a.progressOf(m.Rev)
	p.Status, p.Msg, p.Progress = storage.StatusInProgress, msg, storage.StatusInProgress.Percent()
	if err := cfg.Updates.WriteProgress(m.Rev, p); err != nil {
		// pv_try is set: undo it, so that nothing runs an update whose
		// progress cannot be recorded.
		cfg.Log.Error("write update progress; update dropped", "rev", m.Rev, "err", err)
		if ferr := cfg.Updates.Fail(); ferr != nil {
			cfg.Log.Error("drop pv_try", "err", ferr)
		}
		answer(fmt.Errorf("run %s: %w", m.Rev, err))
		return
	}
	u.try = &tryRun{rev: m.Rev, progress: p, reboot: t.Reboot}
	answer(nil)
	cfg.Log.Info("update installed", "rev", m.Rev, "reboot", t.Reboot, "why", t.Reason)
	if shuttingDown {
		return // its stop goes on (deferred), and ends in the reboot
	}
	if t.Reboot {
		a.leave(ctx, false, "update to "+m.Rev+": "+t.Reason)
		return
	}
	n := &pendingRun{rev: m.Rev, st: m.State, reason: t.Reason}
	u.next = n
	ctx.Request(a.rev, &handOver{stop: t.Stop, keep: t.Keep})
	self, sys := ctx.Self(), ctx.ActorSystem()
	time.AfterFunc(cfg.HandoverTimeout, func() { sys.Root.Send(self, &handoverDue{run: n}) })
}

// deferInstalling keeps the message ctx holds for after the install
// under way, if any; it reports whether it did.
func (a *rootActor) deferInstalling(ctx actor.Context) bool {
	in := a.up.installing
	if in == nil {
		return false
	}
	in.deferred = append(in.deferred, heldRequest{msg: ctx.Message(), sender: ctx.Sender()})
	return true
}

// waiting says whether a shutdown, and a system container's failure,
// wait for the install.
func (in *installRun) waiting() (shutdown, failure bool) {
	for _, d := range in.deferred {
		switch d.msg.(type) {
		case *messages.Shutdown:
			shutdown = true
		case *messages.RebootRequested:
			failure = true
		}
	}
	return shutdown, failure
}

// takeDeferred takes the messages in held back, in the order they came.
func (a *rootActor) takeDeferred(ctx actor.Context, in *installRun) {
	for _, d := range in.deferred {
		switch m := d.msg.(type) {
		case *messages.Shutdown:
			a.shutdown = d.sender
			a.stopForShutdown(ctx)
		case *messages.RebootRequested:
			a.failedOutsideUpdate(ctx, m.Reason)
		}
	}
	in.deferred = nil
}

// DefaultHandoverTimeout is Config.HandoverTimeout's default: the bound
// the device gives its own stop. A handover stops the changed containers
// group by group, each within its grace and the SIGKILL's wait; one
// whose teardown does not end is stuck on the kernel (an unmount whose
// sync waits on a dying disk, a mount under way that reads one), which
// only a reboot clears.
const DefaultHandoverTimeout = 2 * time.Minute

// handoverDue fires HandoverTimeout after a handover was asked for.
type handoverDue struct{ run *pendingRun }

// handoverDue gives up the transition m names when its revision has not
// handed over yet: the device would otherwise stay in the transition for
// good, every update and reboot through the control socket refused as an
// update under way. The reboot tries the update at the next boot.
func (a *rootActor) handoverDue(ctx actor.Context, m *handoverDue) {
	if n := a.up.next; n != m.run || n.from != nil {
		return // handed over, or given up already
	}
	a.cfg.Log.Error("the running revision did not hand over in time: rebooting to run the update", "rev", m.run.rev, "waited", a.cfg.HandoverTimeout)
	a.abandonTransition(ctx, "did not hand over within "+a.cfg.HandoverTimeout.String())
}

// installFailed records an install that returned an error and is not
// stored as installed (Updates.Install went on when it is). When whether
// pv_try=rev reached the medium is unknown, rev's progress says ERROR. A
// pv_try that is stored all the same makes the bootloader boot rev's
// kernel at the next reboot (its latch is not set); pantavisor there
// finds rev's try already failed and rolls back at once, with a reboot
// into the committed revision, as the refusal says. Should rev's kernel
// not come up, the latch or the watchdog brings the committed one back.
func (a *rootActor) installFailed(rev string, err error) {
	cfg := a.cfg
	cfg.Log.Error("install update", "rev", rev, "err", err)
	if !errors.Is(err, bootloader.ErrUnconfirmed) {
		return
	}
	p := a.progressOf(rev)
	p.Status, p.Msg, p.Progress = storage.StatusError, storage.MsgInternalError, storage.StatusError.Percent()
	if werr := cfg.Updates.WriteProgress(rev, p); werr != nil {
		cfg.Log.Error("write progress of an unconfirmed install: the next boot may try it", "rev", rev, "err", werr)
	}
}

// progressOf is rev's progress on disk, or a fresh one.
func (a *rootActor) progressOf(rev string) storage.Progress {
	p, err := a.cfg.Updates.Progress(rev)
	if err != nil {
		a.cfg.Log.Warn("read update progress", "rev", rev, "err", err)
	}
	if p == nil {
		return storage.Progress{}
	}
	return *p
}

// handedOver: the running revision stopped its changed containers and
// detached the others; it is stopped now (its actors have nothing left
// to tear down), and the next revision starts once it is gone.
func (a *rootActor) handedOver(ctx actor.Context, m *handedOver) {
	n := a.up.next
	if a.rev == nil {
		return
	}
	if n == nil {
		// Handed over after the transition was given up (handoverDue):
		// the device is leaving, and a shutdown waits for this
		// revision, which has nothing left to stop but what it handed
		// over (the reboot takes that down).
		if !a.revEnding {
			a.endRevision(ctx)
		}
		return
	}
	if m.h == nil {
		a.abandonTransition(ctx, "could not hand over")
		return
	}
	n.from = m.h
	a.up.backing = backing(m.h, n.rev)
	a.endRevision(ctx)
}

// abandonTransition gives up the non-reboot transition under way (why the
// running revision did not hand over) for a reboot: pv_try names the
// update and its progress says INPROGRESS, so the boot after the reboot
// tries it, and the reboot takes down whatever the revision had detached.
func (a *rootActor) abandonTransition(ctx actor.Context, why string) {
	n := a.up.next
	a.up.next = nil
	a.leave(ctx, false, "update to "+n.rev+": the running revision "+why)
}

// backing returns the revisions other than next whose engines made the
// mounts of the running containers h hands over: a container kept by two
// non-reboot updates in a row still runs on the volumes and logs of the
// revision that started it, which GC must not remove under it.
func backing(h *handover, next string) []string {
	var out []string
	for _, rec := range h.containers {
		if rec.run != nil && rec.origin != "" && rec.origin != next && !slices.Contains(out, rec.origin) {
			out = append(out, rec.origin)
		}
	}
	slices.Sort(out)
	return out
}

// startNext spawns the revision of the transition with what the previous
// one handed over, and releases the previous revision's engine.
func (a *rootActor) startNext(ctx actor.Context) {
	n, cfg := a.up.next, a.cfg
	a.up.next = nil
	old := cfg.Engine
	cfg.Rev, cfg.State, cfg.Engine, cfg.Trying = n.rev, n.st, cfg.NewEngine(n.rev, n.st), true
	if old != nil {
		goLogged(cfg.Log, "release the previous revision's engine", func() {
			if err := old.Close(); err != nil {
				cfg.Log.Warn("release the previous revision's engine", "err", err)
			}
		})
	}
	if err := cfg.Updates.SetCurrent(n.rev); err != nil {
		cfg.Log.Warn("point trails/current at the new revision", "rev", n.rev, "err", err)
	}
	a.booted = nil
	cfg.Log.Info("non-reboot transition", "rev", n.rev, "why", n.reason,
		"kept", len(n.from.containers))
	a.spawnRevision(ctx, n.from)
	if a.shutdown != nil && a.rev != nil {
		ctx.Request(a.rev, &messages.StopRevision{})
	}
}

// tryStep runs one step of the try/commit loop (update.Next) for the
// revision under test and carries it out.
func (a *rootActor) tryStep(ctx actor.Context, c update.Check) {
	tr, cfg := a.up.try, a.cfg
	if tr == nil || cfg.Updates == nil {
		return
	}
	c.Progress, c.Reboot = tr.progress, tr.reboot
	s := update.Next(c)
	switch s.Action {
	case update.ActionWait:
		return
	case update.ActionStartCommitTimer:
		a.writeProgress(tr, s.Progress)
		a.startCommitTimer(ctx, tr)
	case update.ActionCommit:
		if err := cfg.Updates.Commit(tr.rev); err != nil {
			a.commitFailed(ctx, tr, err)
			return
		}
		a.writeProgress(tr, s.Progress)
		if err := cfg.Updates.MarkDone(tr.rev); err != nil {
			cfg.Log.Warn("mark revision done", "rev", tr.rev, "err", err)
		}
		a.tryOver(ctx)
		cfg.Log.Info("update committed", "rev", tr.rev)
	case update.ActionUpdated:
		a.writeProgress(tr, s.Progress)
		a.tryOver(ctx)
		cfg.Log.Info("update finished without reboot; committed at the next boot", "rev", tr.rev)
	case update.ActionRollback:
		a.writeProgress(tr, s.Progress)
		cfg.Log.Error("update failed", "rev", tr.rev, "why", s.Progress.Msg)
		a.recover(ctx, a.tryFailed(tr), s.Progress.Msg)
	}
}

// commitFailed handles a bootloader commit that returned an error and is
// not stored as committed (Updates.Commit went on when it is).
func (a *rootActor) commitFailed(ctx actor.Context, tr *tryRun, err error) {
	cfg := a.cfg
	cfg.Log.Error("commit update to the bootloader", "rev", tr.rev, "err", err)
	if errors.Is(err, bootloader.ErrUnconfirmed) {
		// Whether pv_rev=rev reached the medium is unknown, so neither
		// ERROR nor DONE is written and pv_try is left alone: the
		// progress stays TESTING, what a crash between the commit and
		// DONE leaves, and the reboot lets the next boot settle it from
		// what is stored. Committed, the bootloader boots rev and Resume
		// writes DONE; not, its latch (pv_trying, set when rev was
		// booted) boots the committed revision and Resume records the
		// try rolled back. ERROR here would be wrong in the first case;
		// clearing pv_try would leave TESTING for good in the second.
		a.leave(ctx, false, "commit of "+tr.rev+" unconfirmed: the next boot goes by the stored variables")
		return
	}
	p := tr.progress
	p.Status, p.Msg, p.Progress = storage.StatusError, storage.MsgInternalError, storage.StatusError.Percent()
	a.writeProgress(tr, &p)
	a.recover(ctx, a.tryFailed(tr), "commit failed: "+err.Error())
}

// tryFailed is the recovery of a try that failed: a rollback to the
// committed revision, or safe mode when the factory revision is tried
// with nothing else to roll back to (update.OnFailure). When the
// bootloader cannot be read, the tried revision is taken for the
// committed one: safe mode for "0" keeps the device up, where a rollback
// could boot it again and again.
func (a *rootActor) tryFailed(tr *tryRun) update.Recovery {
	committed, _, err := a.cfg.Updates.Env()
	if err != nil {
		a.cfg.Log.Error("read the committed revision", "err", err)
		committed = tr.rev
	}
	return update.OnFailure(tr.rev, committed, true)
}

// startCommitTimer arms the commit delay of a TESTING try.
func (a *rootActor) startCommitTimer(ctx actor.Context, tr *tryRun) {
	tr.gen++
	gen, self, sys := tr.gen, ctx.Self(), ctx.ActorSystem()
	delay := a.cfg.tunables().CommitDelay
	time.AfterFunc(delay, func() { sys.Root.Send(self, &commitDue{gen: gen}) })
	a.cfg.Log.Info("update testing", "rev", tr.rev, "commit_in", delay)
}

func (a *rootActor) writeProgress(tr *tryRun, p *storage.Progress) {
	if p == nil {
		return
	}
	tr.progress = *p
	if err := a.cfg.Updates.WriteProgress(tr.rev, *p); err != nil {
		a.cfg.Log.Error("write update progress", "rev", tr.rev, "status", p.Status, "err", err)
	}
}

// tryOver tells the revision it is no longer under test.
func (a *rootActor) tryOver(ctx actor.Context) {
	a.cfg.Trying = false
	if a.rev != nil {
		ctx.Send(a.rev, &messages.TryOver{})
	}
}

// recover carries out a recovery of package update after the failed
// progress is written: a rollback clears pv_try, then reboots into the
// committed revision; safe mode clears pv_try and stops the containers,
// keeping the control socket up.
func (a *rootActor) recover(ctx actor.Context, r update.Recovery, why string) {
	cfg := a.cfg
	if r != update.RecoverReboot && cfg.Updates != nil {
		if err := cfg.Updates.Fail(); err != nil {
			// The boot script's latch still rolls back after the reboot.
			cfg.Log.Error("clear pv_try", "err", err)
		}
	}
	switch r {
	case update.RecoverSafeMode:
		cfg.Log.Error("safe mode: containers stopped, control socket up", "why", why)
		a.up.safeMode = why
		if a.rev != nil {
			ctx.Request(a.rev, &messages.StopRevision{})
		}
	case update.RecoverRollback:
		a.leave(ctx, false, "rollback: "+why)
	default:
		a.leave(ctx, false, why)
	}
}

// leave asks the process to reboot (or power off): it stops the device,
// whose next boot the bootloader decides.
func (a *rootActor) leave(ctx actor.Context, poweroff bool, why string) {
	u, cfg := a.up, a.cfg
	if u.leaving != "" {
		return
	}
	u.leaving = why
	if poweroff {
		cfg.Log.Info("power-off requested", "why", why)
		if cfg.OnPoweroff != nil {
			goLogged(cfg.Log, "OnPoweroff callback", func() { cfg.OnPoweroff(why) })
		}
		return
	}
	a.reboots = append(a.reboots, why)
	cfg.Log.Info("reboot requested", "why", why)
	if cfg.OnReboot != nil {
		goLogged(cfg.Log, "OnReboot callback", func() { cfg.OnReboot(why) })
	}
}

// power is POST /commands REBOOT_DEVICE and POWEROFF_DEVICE.
func (a *rootActor) power(ctx actor.Context, m *messages.PowerRequest) {
	if a.updating() {
		ctx.Respond(&messages.PowerResult{Err: fmt.Errorf("power request: %w", update.ErrUpdateOngoing)})
		return
	}
	ctx.Respond(&messages.PowerResult{})
	why := m.Reason
	if why == "" {
		why = "requested through the control socket"
	}
	a.leave(ctx, m.Poweroff, why)
}

// revisions answers GetRevisions.
func (a *rootActor) revisions() *messages.RevisionsReply {
	r := &messages.RevisionsReply{Updating: a.updating()}
	if a.cfg.State != nil {
		r.Running = a.cfg.Rev
	}
	if a.cfg.Updates != nil {
		var err error
		if r.Committed, r.Tried, err = a.cfg.Updates.Env(); err != nil {
			a.cfg.Log.Warn("read bootloader variables", "err", err)
			r.Err = fmt.Errorf("read bootloader variables: %w", err)
		}
	}
	r.Backing = a.up.backing
	return r
}

// booted feeds a revision's boot report to the try/commit loop.
func (a *rootActor) bootedUnderTest(ctx actor.Context, m *messages.RevisionBooted) {
	tr := a.up.try
	if tr == nil || tr.rev != m.Rev {
		return
	}
	if tr.resumed && tr.progress.Status == storage.StatusTesting {
		// The commit delay starts again: the timer died with the
		// previous supervisor.
		tr.resumed = false
		a.startCommitTimer(ctx, tr)
		return
	}
	goals := update.GoalsAchieved
	if len(m.Missed) > 0 {
		goals = update.GoalsTimedOut
	}
	a.tryStep(ctx, update.Check{Goals: goals})
}

// rollbackRequested: a container gave up during the test.
func (a *rootActor) rollbackRequested(ctx actor.Context, m *messages.RollbackRequested) {
	tr := a.up.try
	if a.cfg.Updates == nil || tr == nil || tr.rev != m.Rev || !update.Ongoing(&tr.progress) {
		return
	}
	a.tryStep(ctx, update.Check{ContainerFailed: true})
}

// failedOutsideUpdate: a system container gave up with no update under
// test. A revision reboots, as upstream does, except the factory revision,
// whose reboot would loop: it enters safe mode with its progress in ERROR
// (SPEC §4).
func (a *rootActor) failedOutsideUpdate(ctx actor.Context, why string) {
	if a.updating() {
		// The revision that failed is being left for an update (its
		// install is stored, or it is handing over): the reboot tries
		// the update. Safe mode, for the factory revision, would drop
		// the update's pv_try and leave its progress INPROGRESS.
		a.leave(ctx, false, why)
		return
	}
	r := update.OnFailure(a.cfg.Rev, "", false)
	if a.cfg.Updates == nil || r != update.RecoverSafeMode {
		a.leave(ctx, false, why)
		return
	}
	p := storage.NewProgress(storage.StatusError, storage.MsgContainerFailed)
	if err := a.cfg.Updates.WriteProgress(a.cfg.Rev, p); err != nil {
		a.cfg.Log.Error("write progress", "rev", a.cfg.Rev, "err", err)
	}
	a.recover(ctx, r, why)
}

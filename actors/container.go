package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
)

// containerRecord is the part of a container actor that must survive the
// actor's own restarts (after a Go panic, or a recovery restart decided by
// the revision): the mounted filesystem and the running container. A new
// incarnation re-adopts a live run instead of killing a healthy container.
// Only the actor's goroutine touches it.
type containerRecord struct {
	spec *state.Container
	// pool is the actor of the container's IPAM pool, nil for host
	// networking; lease is what it gave (kept across restarts).
	pool  *actor.PID
	lease *messages.Lease
	mount Mount
	// origin is the revision whose engine made mount: its revision
	// volumes and logs are under that revision's directories.
	origin string
	run    Run
	// exits is run's one exit wait (see exitWatch), made on first watch.
	exits *exitWatch
	// running says the run's init has not exited yet.
	running bool
	// armed says the container should be up: StartContainer was received
	// and no stop or final decision came after it. A restarted incarnation
	// starts the container again when armed and not running.
	armed bool
	// gen tags asynchronous results: a result from an older operation than
	// the current one is stale and ignored.
	gen uint64

	status messages.Status
	// statusSeq is the Seq of the last status sent (see
	// messages.ContainerStatusChanged): kept with the record, so that it
	// only grows across incarnations and handovers.
	statusSeq uint64
	since     time.Time
	startedAt time.Time
	lastExit  *messages.Exit
	err       string
	// releasing is set while a dead run is being torn down after a final
	// decision; a stop waits for it, so that shutdown never reports a
	// container STOPPED while its cgroups or mounts still exist.
	releasing bool
	// stopWanted records a StopContainer that arrived while releasing,
	// mounting or starting: the stop goes on once that work reports back,
	// so that nothing it made outlives the stop.
	stopWanted  bool
	stopTimeout time.Duration
	// decided is a final decision that arrived while a mount or start
	// ran (a restarted incarnation went on with the start): it waits as
	// a stop does (stopWanted), and its status is told once the stop is
	// done, in place of STOPPED.
	decided *messages.RecoveryDecided
	// busy is set while a mount or start runs in the background.
	busy bool
	// stopping is set while a stop's teardown runs in the background:
	// another stop then waits for it, instead of finding nothing to stop
	// and reporting STOPPED while the container still runs.
	stopping bool
	// stuckPid is the init of a run whose processes survived the stop's
	// SIGKILL, which the teardown waits for (stopStuck); 0 otherwise.
	stuckPid int
	// restarts counts container (not actor) restarts.
	restarts      int
	actorRestarts int
	// retries is the recovery retries a restarted supervisor found in the
	// books (adopt.go), for the revision's bookkeeping.
	retries       int
	lastFailure   string
	lastFailureAt time.Time
}

// containerActor runs one container: its status machine, its start, exit
// and stop. A container that exits on its own makes the actor fail with
// *messages.ContainerExited, so that the revision's supervision decides
// what happens next.
type containerActor struct {
	rec    *containerRecord
	engine Engine
	// rev is the revision of engine.
	rev string
	log *slog.Logger
	// stopTimeout is the SIGTERM → SIGKILL grace when the actor itself is
	// stopped without a StopContainer first.
	stopTimeout time.Duration
	// adopted: rec was handed over by the previous revision (see
	// handover.go); the first incarnation takes it over.
	adopted bool
	// life ends when the actor stops for good (every incarnation shares
	// it): its exit watches end with it.
	life *actorLife
}

// actorLife is closed once, when an actor stops (not when it restarts).
type actorLife struct {
	quit chan struct{}
	once sync.Once
	// sent follows the mounts and starts under way, with how to undo
	// each: an actor that stops for good waits for them and undoes their
	// results, or the mount or the running container would be left with
	// nobody to own it while its successor (a revision restarted after a
	// panic makes its container actors anew) mounts and starts the same
	// container in the same places.
	sent inflight[func() error]
}

func (l *actorLife) end() { l.once.Do(func() { close(l.quit) }) }

// exitWatch is the one wait for a run's exit, however many actors hear of
// it: one per revision that kept the container running (a non-reboot
// update hands a live run to the next revision's actor). Each actor's
// watch waits on done or on its own end, so a watch never outlives the
// actor that made it, however many updates a container lives through.
type exitWatch struct {
	run  Run
	done chan struct{}
	exit messages.Exit
}

func newExitWatch(run Run) *exitWatch {
	w := &exitWatch{run: run, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer func() {
			if p := recover(); p != nil {
				w.exit = messages.Exit{Code: -1, At: time.Now()}
			}
		}()
		w.exit = run.Wait()
	}()
	return w
}

// Internal results of the goroutines that do the blocking work.
type (
	mountDone struct {
		gen   uint64
		key   uint64 // in actorLife.sent
		mount Mount
		err   error
	}
	startDone struct {
		gen   uint64
		key   uint64 // in actorLife.sent
		run   Run
		lease *messages.Lease
		err   error
	}
	exitDone struct {
		gen  uint64
		exit messages.Exit
	}
	stopDone struct {
		gen uint64
		err error
	}
	// stopStuck tells, from a stop's teardown, that the run's processes
	// survived SIGKILL: the teardown waits for them to end before it
	// destroys the run and unmounts (neither can be done while they
	// live), and the container is STOPPING, stuck, meanwhile.
	stopStuck struct {
		gen uint64
		pid int
		err error
	}
	// releaseDone carries the final decision whose release is done: its
	// status is told only then, as a container reported STOPPED or FAILED
	// has nothing left to release (a shutdown during a retry's back-off
	// closed the engine while the rootfs was still mounted).
	releaseDone struct{ decided *messages.RecoveryDecided }
)

// containerStopGrace is the SIGTERM → SIGKILL grace of a container actor's
// own stop (when it stops as an actor: its parent's restart or stop);
// StopTimeout is that of a stop the revision asks for.
const containerStopGrace = 10 * time.Second

func newContainerProps(rec *containerRecord, engine Engine, rev string, log *slog.Logger, adopted bool) *actor.Props {
	first := adopted
	life := &actorLife{quit: make(chan struct{})}
	return actor.PropsFromProducer(func() actor.Actor {
		a := &containerActor{rec: rec, engine: engine, rev: rev, log: log.With("container", rec.spec.Name), stopTimeout: containerStopGrace,
			adopted: first, life: life}
		first = false // a restarted incarnation re-adopts as usual
		return a
	})
}

func (a *containerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.started(ctx)
	case *actor.Restarting:
		a.rec.actorRestarts++
	case *actor.Stopping:
		a.stopping()
	case *messages.StartContainer:
		a.rec.armed = true
		a.bringUp(ctx)
	case *messages.StopContainer:
		a.rec.decided = nil // the later request wins
		a.stop(ctx, m.Timeout)
	case *mountDone:
		a.mounted(ctx, m)
	case *startDone:
		a.runStarted(ctx, m)
	case *exitDone:
		a.exited(ctx, m)
	case *stopDone:
		a.stopped(ctx, m)
	case *stopStuck:
		a.stuck(ctx, m)
	case *releaseDone:
		a.rec.releasing = false
		switch {
		case a.rec.stopWanted:
			// The release took what it released off the record when
			// it began, and bringUp starts nothing while it runs: a
			// run or mount there now would be a bug's, which the stop
			// still brings down rather than report as stopped.
			a.rec.stopWanted = false
			if a.rec.run == nil && a.rec.mount == nil && !a.rec.busy {
				a.log.Info("container stopped")
				a.setStatus(ctx, messages.StatusStopped, "")
			} else {
				a.stop(ctx, a.rec.stopTimeout)
			}
		case a.rec.armed:
			// A start asked during the release (an API start of a
			// container given up): it mounts only now.
			a.bringUp(ctx)
		default:
			a.setStatus(ctx, m.decided.Status, m.decided.Reason)
		}
	case *messages.RecoveryDecided:
		a.rec.armed = false
		if !a.release(ctx, m) {
			a.setStatus(ctx, m.Status, m.Reason)
		}
	case *messages.SignalContainer:
		ctx.Respond(a.signal(ctx, m))
	case *messages.Describe:
		ctx.Respond(a.describe(ctx))
	case *detach:
		a.detach(ctx)
	case *injectedPanic:
		// Only the package's tests can build this message: it proves that a
		// Go bug in a container actor neither kills pantavisor nor loses
		// the container.
		panic(m.reason)
	case hang:
		// The package's tests only: messages queue behind it in the order
		// a busy actor would see them.
		<-m.until
	}
}

// injectedPanic makes the actor panic; see the tests.
type injectedPanic struct{ reason string }

// started runs on every incarnation: adopt a live run, resume a wanted
// start, or wait for StartContainer.
func (a *containerActor) started(ctx actor.Context) {
	r := a.rec
	switch {
	case a.adopted:
		a.adopt(ctx)
	case r.run != nil && r.running:
		a.log.Info("re-adopted running container", "pid", r.run.Pid())
	case r.busy || r.releasing || r.stopping:
		// Work under way reports to this incarnation, which carries on
		// from there as the record says (bringUp).
	case r.armed:
		// Restarted by the revision after an exit: start again.
		if r.lastExit != nil {
			r.restarts++
		}
		a.bringUp(ctx)
	default:
		if r.status == "" {
			a.setStatus(ctx, messages.StatusInstalled, "")
		}
	}
}

// bringUp mounts when needed, then starts unless the goal is MOUNTED.
//
// It starts nothing while other work on the container runs. A mount or
// start under way serves the start asked (a second one would create the
// same container twice). A teardown under way (a stop's, or the release
// after a final decision) is unmounting the places a new mount would use,
// since the engine's are named after the container: the start waits for
// it, and its end (stopped, releaseDone) brings the container up, as armed
// says. Either way a stop asked before the start and still waiting
// (stopWanted) is dropped: the later request wins, and the revision
// answers the API's start only once the container is up or failed.
func (a *containerActor) bringUp(ctx actor.Context) {
	r := a.rec
	switch {
	case r.run != nil && r.running:
		return // already up
	case r.busy:
		r.stopWanted, r.decided = false, nil
		a.setStatus(ctx, messages.StatusStarting, "")
		return
	case r.releasing || r.stopping:
		a.log.Info("start waits for the container's teardown")
		r.stopWanted, r.decided = false, nil
		a.setStatus(ctx, messages.StatusStarting, "")
		return
	}
	r.gen++
	gen, self, sys := r.gen, ctx.Self(), ctx.ActorSystem()
	if r.mount == nil {
		spec, engine, sent, key := r.spec, a.engine, &a.life.sent, a.life.sent.begin()
		r.busy = true
		goSafe(sys, self, func() any { return &mountDone{gen: gen, key: key, err: errPanic} }, func() any {
			defer sent.done()
			m, err := engine.Mount(spec)
			undo := func() error { return teardown(nil, m, false, 0) }
			if !sent.deliver(key, undo, m != nil) {
				if err := undo(); err != nil {
					a.log.Error("unmount a mount its actor never took", "err", err)
				}
				return nil
			}
			return &mountDone{gen: gen, key: key, mount: m, err: err}
		})
		return
	}
	a.startRun(ctx)
}

func (a *containerActor) mounted(ctx actor.Context, m *mountDone) {
	if !a.life.sent.received(m.key) {
		return // stopping for good: undone there
	}
	r := a.rec
	r.busy = false
	if r.stopWanted {
		r.stopWanted = false
		if m.mount != nil {
			r.mount = m.mount
		}
		a.stop(ctx, r.stopTimeout)
		return
	}
	if m.gen != r.gen {
		if m.mount != nil { // superseded: nobody will use it
			mount, log := m.mount, a.log
			goLogged(log, "unmount a superseded mount", func() {
				if err := mount.Unmount(); err != nil {
					log.Error("unmount a superseded mount", "err", err)
				}
			})
		}
		return
	}
	if m.err != nil {
		panic(&messages.ContainerStartFailed{Name: r.spec.Name, Err: m.err.Error(), Seq: r.statusSeq})
	}
	r.mount, r.origin = m.mount, mountOrigin(m.mount, a.rev)
	if r.spec.StatusGoal == state.GoalMounted {
		a.log.Info("container mounted")
		a.setStatus(ctx, messages.StatusMounted, "")
		return
	}
	a.startRun(ctx)
}

func (a *containerActor) startRun(ctx actor.Context) {
	r := a.rec
	a.log.Info("starting container")
	a.setStatus(ctx, messages.StatusStarting, "")
	gen, self, sys, mount := r.gen, ctx.Self(), ctx.ActorSystem(), r.mount
	// A run that exited before (a restart) is removed first, in the same
	// background work: Destroy touches cgroups and must not block Receive.
	dead := r.run
	if r.running {
		dead = nil
	}
	r.run = nil
	r.busy = true
	log, pool, req, timeout := a.log, r.pool, a.leaseRequest(), a.stopTimeout
	sent, key := &a.life.sent, a.life.sent.begin()
	goSafe(sys, self, func() any { return &startDone{gen: gen, key: key, err: errPanic} }, func() any {
		defer sent.done()
		if dead != nil {
			if err := dead.Destroy(); err != nil {
				log.Error("destroy exited container", "err", err)
			}
		}
		var lease *messages.Lease
		var run Run
		var err error
		if pool != nil {
			lease, err = askLease(sys, pool, req)
		}
		if err == nil {
			run, err = mount.Start(lease)
		}
		// The mount goes too: an actor that stops for good while a start
		// is under way leaves it to the start (see stopping).
		undo := func() error { return teardown(run, mount, run != nil, timeout) }
		if !sent.deliver(key, undo, true) {
			if err := undo(); err != nil {
				log.Error("stop a container its actor never took", "err", err)
			}
			return nil
		}
		return &startDone{gen: gen, key: key, run: run, lease: lease, err: err}
	})
}

func (a *containerActor) runStarted(ctx actor.Context, m *startDone) {
	if !a.life.sent.received(m.key) {
		return // stopping for good: undone there
	}
	r := a.rec
	r.busy = false
	if r.stopWanted {
		// A stop arrived while the container was being created: finish it
		// now, with whatever the start made.
		r.stopWanted = false
		if m.run != nil {
			r.run, r.running, r.lease = m.run, true, m.lease
		}
		a.stop(ctx, r.stopTimeout)
		return
	}
	if m.gen != r.gen {
		if m.run != nil { // a stop overtook this start: undo it
			run, timeout, log := m.run, a.stopTimeout, a.log
			goLogged(log, "undo a superseded start", func() {
				if err := teardown(run, nil, true, timeout); err != nil {
					log.Error("undo a superseded start", "err", err)
				}
			})
		}
		return
	}
	if m.err != nil {
		panic(&messages.ContainerStartFailed{Name: r.spec.Name, Err: m.err.Error(), Seq: r.statusSeq})
	}
	r.run, r.running = m.run, true
	r.lease = m.lease
	r.startedAt = time.Now()
	a.log.Info("container started", "pid", m.run.Pid())
	a.watch(ctx, m.run)
	a.setStatus(ctx, messages.StatusStarted, "")
}

// watch waits for run's init to exit, in the background, and reports it
// to this actor tagged with the current generation.
func (a *containerActor) watch(ctx actor.Context, run Run) {
	r := a.rec
	if r.exits == nil || r.exits.run != run {
		r.exits = newExitWatch(run)
	}
	gen, self, sys, w, quit := r.gen, ctx.Self(), ctx.ActorSystem(), r.exits, a.life.quit
	goSafe(sys, self, func() any { return &exitDone{gen: gen, exit: messages.Exit{Code: -1, At: time.Now()}} }, func() any {
		select {
		case <-w.done:
			return &exitDone{gen: gen, exit: w.exit}
		case <-quit:
			return nil // this actor is gone; the next owner watches
		}
	})
}

func (a *containerActor) exited(ctx actor.Context, m *exitDone) {
	r := a.rec
	if m.gen != r.gen {
		return
	}
	r.running = false
	exit := m.exit
	r.lastExit = &exit
	r.lastFailure, r.lastFailureAt = exit.String(), exit.At
	a.log.Info("container exited", "code", exit.Code, "signal", exit.Signal)
	// The exit travels in the failure itself: a status message would be
	// processed after the revision's decision and undo it.
	panic(&messages.ContainerExited{Name: r.spec.Name, Exit: exit, StartedAt: r.startedAt, Seq: r.statusSeq})
}

// stop brings the container down (and unmounts) in the background; the
// revision waits for STOPPED before stopping the previous group.
func (a *containerActor) stop(ctx actor.Context, timeout time.Duration) {
	r := a.rec
	r.armed = false
	if r.releasing || r.busy {
		r.stopWanted, r.stopTimeout = true, timeout
		a.setStatus(ctx, messages.StatusStopping, "")
		return
	}
	if r.stopping {
		// The teardown under way reports STOPPED when it is done; a
		// stuck one keeps saying so.
		a.setStatus(ctx, messages.StatusStopping, r.err)
		return
	}
	r.gen++ // anything in flight is now stale
	if r.run == nil && r.mount == nil {
		a.down(ctx, "")
		return
	}
	a.log.Info("stopping container")
	a.setStatus(ctx, messages.StatusStopping, "")
	run, mount, running := r.run, r.mount, r.running
	r.run, r.mount, r.running, r.stopping = nil, nil, false, true
	gen, self, sys, sent := r.gen, ctx.Self(), ctx.ActorSystem(), &a.life.sent
	sent.begin() // an actor stopping for good waits for it too
	stuck := func(pid int, err error) { sys.Root.Send(self, &stopStuck{gen: gen, pid: pid, err: err}) }
	quit := a.life.quit
	goSafe(sys, self, func() any { return &stopDone{gen: gen, err: errPanic} }, func() any {
		defer sent.done()
		return &stopDone{gen: gen, err: teardownWaiting(run, mount, running, timeout, stuck, quit)}
	})
}

// stuck: the stop's SIGKILL did not end the container's processes (they
// are in uninterruptible sleep: a hung FUSE server, a dead disk), and its
// teardown waits for them. The container is not STOPPED while they live:
// it stays STOPPING, with why and its init's pid, and the revision's own
// stop goes on without it (messages.ContainerStatusChanged.Stuck).
func (a *containerActor) stuck(ctx actor.Context, m *stopStuck) {
	r := a.rec
	if m.gen != r.gen || !r.stopping {
		return
	}
	r.stuckPid = m.pid
	a.log.Error("container processes outlive the stop: it waits for them to end", "pid", m.pid, "err", m.err)
	a.setStatus(ctx, messages.StatusStopping, "its processes outlive the stop, which waits for them to end: "+m.err.Error())
}

func (a *containerActor) stopped(ctx actor.Context, m *stopDone) {
	if m.gen != a.rec.gen {
		return
	}
	if a.rec.stuckPid != 0 {
		a.log.Info("the processes that outlived the stop have ended", "pid", a.rec.stuckPid)
	}
	a.rec.stopping, a.rec.stuckPid = false, 0
	errText := ""
	if m.err != nil {
		errText = m.err.Error()
		a.log.Error("stop container", "err", m.err)
	}
	a.log.Info("container stopped")
	if a.rec.armed {
		// A start asked during the teardown waited for it (bringUp).
		a.bringUp(ctx)
		return
	}
	a.down(ctx, errText)
}

// down tells that a stop is done: STOPPED, or the status of the final
// decision the stop was made for (decided).
func (a *containerActor) down(ctx actor.Context, errText string) {
	if d := a.rec.decided; d != nil {
		a.rec.decided = nil
		a.setStatus(ctx, d.Status, d.Reason)
		return
	}
	a.setStatus(ctx, messages.StatusStopped, errText)
}

// teardown stops a run, destroys it and unmounts, collecting every error
// instead of stopping at the first, so that as much as possible is undone;
// the errors are joined, so errors.Is still finds each (a kill timeout).
func teardown(run Run, mount Mount, running bool, timeout time.Duration) error {
	return teardownWaiting(run, mount, running, timeout, nil, nil)
}

// errLeft is a stuck teardown's end once its actor is gone: see
// teardownWaiting.
var errLeft = errors.New("its processes ended after its actor stopped: its cgroups, state and mounts are left")

// teardownWaiting is teardown that, when the run's processes survive its
// stop (SIGKILL is queued, and they do not end: uninterruptible sleep),
// tells stuck and waits for them to end before it destroys the run and
// unmounts, however long that takes: until then its cgroups cannot be
// removed, nor its mounts let go. A nil stuck waits for nothing: the
// stop's error is the teardown's, and the run is left to the kernel.
//
// Once gone is closed (the actor stopped for good while it waited), the
// processes' end destroys and unmounts nothing: the container's next
// actor mounts in the same places (a revision restarted after a Go panic
// makes its actors anew), and an unmount now would take its mounts and
// its boot storage; the next start removes the state left (a stale
// container), the reboot the rest.
func teardownWaiting(run Run, mount Mount, running bool, timeout time.Duration, stuck func(pid int, err error), gone <-chan struct{}) error {
	var errs []error
	if run != nil {
		if running {
			if err := run.Stop(timeout); err != nil {
				if stuck == nil || exited(run) {
					errs = append(errs, fmt.Errorf("stop: %w", err))
				} else {
					stuck(run.Pid(), err)
					run.Wait()
					select {
					case <-gone:
						return errLeft
					default:
					}
				}
			}
		}
		if err := run.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("destroy: %w", err))
		}
	}
	if mount != nil {
		if err := mount.Unmount(); err != nil {
			errs = append(errs, fmt.Errorf("unmount: %w", err))
		}
	}
	return errors.Join(errs...)
}

// release destroys a dead run and unmounts, after the final decision d,
// in the background; releaseDone tells d's status. It reports whether a
// status is still to come (if not, the caller tells d's now).
//
// A stop whose teardown is under way took the run and mount already (the
// exit came first, the revision's stop next, its decision last): that
// teardown reports STOPPED once the container is down, as the stop asked,
// and it must keep its generation, or its result would be dropped as stale
// and the container left stopping for good.
func (a *containerActor) release(ctx actor.Context, d *messages.RecoveryDecided) bool {
	r := a.rec
	if r.stopping {
		return true
	}
	if r.busy {
		// A mount or start under way, which an incarnation restarted
		// after a panic went on with: it is undone when it reports, as
		// for a stop asked meanwhile, and d told then (down).
		r.stopWanted, r.stopTimeout, r.decided = true, a.stopTimeout, d
		return true
	}
	run, mount := r.run, r.mount
	r.run, r.mount, r.running = nil, nil, false
	if run == nil && mount == nil {
		return false
	}
	r.gen++ // an exit or start in flight is now stale
	r.releasing = true
	self, sys, log, timeout, sent := ctx.Self(), ctx.ActorSystem(), a.log, a.stopTimeout, &a.life.sent
	sent.begin() // an actor stopping for good waits for it too
	goSafe(sys, self, func() any { return &releaseDone{decided: d} }, func() any {
		defer sent.done()
		if err := teardown(run, mount, false, timeout); err != nil {
			log.Error("release container", "err", err)
		}
		return &releaseDone{decided: d}
	})
	return true
}

// stopping is the last resort when the actor is stopped with its container
// still up (the revision normally stops containers first). It blocks, but
// the actor is going away and nothing else is queued for it.
func (a *containerActor) stopping() {
	a.life.end()
	r := a.rec
	r.gen++
	defer func() {
		if p := recover(); p != nil {
			logPanic(a.log, "stop container on actor stop", p)
		}
	}()
	// Results on their way here will never be taken: undo them. A mount
	// or start still under way undoes its own when it ends; it is waited
	// for, as the next actor would mount and start in the same places.
	for _, undo := range a.life.sent.end() {
		if err := undo(); err != nil {
			a.log.Error("undo a start on actor stop", "err", err)
		}
	}
	// So is a stop's teardown or a release under way: it is unmounting
	// the places the next actor mounts in.
	if (r.busy || r.stopping || r.releasing) && !a.life.sent.wait(workWait) {
		a.log.Error("a mount, start or teardown still under way on actor stop: it is undone when it ends", "waited", workWait)
	}
	mount := r.mount
	if r.busy {
		mount = nil // a start under way ran in it, and took it down
	}
	if r.run == nil && mount == nil {
		return
	}
	if err := teardown(r.run, mount, r.running, a.stopTimeout); err != nil {
		a.log.Error("stop container on actor stop", "err", err)
	}
	r.run, r.mount, r.running = nil, nil, false
}

// signal takes a container's signal; the one known is "ready", which a
// container whose goal is READY sends once it is STARTED.
func (a *containerActor) signal(ctx actor.Context, m *messages.SignalContainer) *messages.SignalResult {
	r := a.rec
	switch {
	case m.Type != "ready":
		return &messages.SignalResult{Refusal: messages.SignalUnknownType, Detail: m.Type}
	case r.spec.StatusGoal != state.GoalReady:
		return &messages.SignalResult{Refusal: messages.SignalGoalNotReady, Detail: "goal " + string(r.spec.StatusGoal)}
	case r.status != messages.StatusStarted && r.status != messages.StatusReady:
		return &messages.SignalResult{Refusal: messages.SignalWrongStatus, Detail: "status " + string(r.status)}
	}
	if r.status != messages.StatusReady {
		a.setStatus(ctx, messages.StatusReady, "")
	}
	return &messages.SignalResult{}
}

func (a *containerActor) setStatus(ctx actor.Context, s messages.Status, errText string) {
	r := a.rec
	if r.status != s {
		r.since = time.Now()
	}
	r.status, r.err = s, errText
	if s == messages.StatusFailed && errText != "" {
		r.lastFailure, r.lastFailureAt = errText, time.Now()
	}
	a.sendStatus(ctx)
}

func (a *containerActor) sendStatus(ctx actor.Context) {
	r := a.rec
	r.statusSeq++
	m := &messages.ContainerStatusChanged{
		Name: r.spec.Name, Status: r.status, Since: r.since, StartedAt: r.startedAt,
		LastExit: r.lastExit, Err: r.err, Lease: r.lease, Seq: r.statusSeq,
	}
	if r.run != nil && r.running {
		m.Pid = r.run.Pid()
	}
	if r.stuckPid != 0 {
		m.Pid, m.Stuck = r.stuckPid, true
	}
	ctx.Send(ctx.Parent(), m)
}

func (a *containerActor) describe(ctx actor.Context) *messages.Node {
	r := a.rec
	n := &messages.Node{
		Path: ctx.Self().Id, Kind: "container", Status: string(r.status),
		Restarts: r.restarts, ActorRestarts: r.actorRestarts, LastFailure: r.lastFailure,
		Since: r.since, Info: map[string]string{"group": r.spec.Group, "goal": string(r.spec.StatusGoal)},
	}
	if !r.lastFailureAt.IsZero() {
		t := r.lastFailureAt
		n.LastFailureAt = &t
	}
	if r.run != nil && r.running {
		n.Info["pid"] = strconv.Itoa(r.run.Pid())
	}
	if r.stuckPid != 0 {
		n.Info["pid"], n.Info["stuck"] = strconv.Itoa(r.stuckPid), "processes outlive the stop"
	}
	if r.lastExit != nil {
		n.Info["last_exit"] = r.lastExit.String()
	}
	if r.lease != nil {
		n.Info["ip"] = r.lease.Addr.String()
	}
	return n
}

func (a *containerActor) leaseRequest() *messages.LeaseRequest {
	req := &messages.LeaseRequest{Container: a.rec.spec.Name}
	if n := a.rec.spec.Network; n != nil {
		req.Static, req.MAC = n.IP, n.MAC
	}
	return req
}

// askLease asks the pool for the container's address. It blocks, so it
// runs in the start goroutine, never in Receive.
func askLease(sys *actor.ActorSystem, pool *actor.PID, req *messages.LeaseRequest) (*messages.Lease, error) {
	res, err := sys.Root.RequestFuture(pool, req, 30*time.Second).Result()
	if err != nil {
		return nil, fmt.Errorf("ask pool for an address: %w", err)
	}
	l, ok := res.(*messages.Lease)
	if !ok {
		return nil, fmt.Errorf("ask pool for an address: unexpected reply %T", res)
	}
	if l.Err != "" {
		return nil, errors.New(l.Err)
	}
	return l, nil
}

// mountOrigin is m's Origin, else def.
func mountOrigin(m Mount, def string) string {
	if o := m.Origin(); o != "" {
		return o
	}
	return def
}

package actors

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
	"github.com/pantavisor/pv/update"
	"github.com/pantavisor/pv/xconnect"
)

// rootName is the id of the root actor; every path in the tree starts here.
const rootName = "root"

// rootActor owns the running revision. It is spawned with a guardian that
// never lets it die; the revision and its containers hang below it.
type rootActor struct {
	// cfg and up are shared by root's incarnations (see rootUpdate).
	cfg      *Config
	up       *rootUpdate
	since    time.Time
	rev      *actor.PID
	shutdown *actor.PID
	// reboots and rollbacks are the requests received, newest last; the
	// bootloader work behind them belongs to the updates feature.
	reboots   []string
	rollbacks []string
	// booted is the revision's boot report, once it came.
	booted *messages.RevisionBooted
	// revEnding: rev was told to stop. Requests for it are held (held)
	// until it is gone, then go to the next revision, or get their empty
	// answer if none follows: a message that reaches an actor after it
	// stopped is dropped without a reply, and its sender would wait out
	// its timeout (a minute for a container action).
	revEnding bool
	held      []heldRequest
}

// heldRequest is a request root holds for the next revision: the message,
// who asked, and the answer when no revision runs.
type heldRequest struct {
	msg    any
	sender *actor.PID
	empty  any
}

func (a *rootActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.since = time.Now()
		a.startRevision(ctx)
	case hang:
		a.cfg.Log.Error("root actor hanging on purpose (_PV_TEST_HANG_ROOT)")
		<-m.until
	case *messages.Shutdown:
		a.cfg.Log.Info("shutdown requested", "reason", m.Reason)
		if a.deferInstalling(ctx) {
			// Its sender is kept with the install, not in a.shutdown:
			// a root restarted after a Go panic meanwhile must still
			// know that the install ends in a shutdown.
			a.cfg.Log.Info("shutdown waits for the install under way", "rev", a.up.installing.run.Rev)
			return
		}
		a.shutdown = ctx.Sender()
		a.stopForShutdown(ctx)
	case *messages.RevisionStopped:
		a.endRevision(ctx) // its containers are down; Terminated follows
	case *actor.Terminated:
		if a.rev != nil && m.Who.Equal(a.rev) {
			a.rev, a.revEnding = nil, false
			a.cfg.board.publish(nil) // no revision: the tree answers (empty)
			if n := a.up.next; n != nil && n.from != nil {
				a.startNext(ctx)
				a.releaseHeld(ctx)
				return
			}
			a.releaseHeld(ctx)
			if a.up.next != nil {
				// Stopped before it handed over: only a Go panic past
				// its budget does that (a shutdown waits for the
				// transition's end). The containers whose records it had
				// detached are owned by no actor now.
				a.abandonTransition(ctx, "stopped before it handed over")
			}
			a.finishShutdown(ctx)
		}
	case *messages.RebootRequested:
		if a.deferInstalling(ctx) {
			return
		}
		a.failedOutsideUpdate(ctx, m.Reason)
	case *runRevision:
		a.runRevision(ctx, m)
	case *installed:
		a.installed(ctx, m)
	case *handedOver:
		a.handedOver(ctx, m)
	case *handoverDue:
		a.handoverDue(ctx, m)
	case *commitDue:
		if tr := a.up.try; tr != nil && tr.gen == m.gen {
			a.tryStep(ctx, update.Check{CommitDue: true})
		}
	case *messages.PowerRequest:
		a.power(ctx, m)
	case *messages.GetRevisions:
		ctx.Respond(a.revisions())
	case *messages.RevisionBooted:
		a.booted = m
		if len(m.Missed) > 0 {
			a.cfg.Log.Warn("revision booted without reaching every goal", "rev", m.Rev, "took", m.Took.Round(time.Millisecond), "missed", m.Missed)
		} else {
			a.cfg.Log.Info("revision booted", "rev", m.Rev, "took", m.Took.Round(time.Millisecond))
		}
		if a.cfg.OnBooted != nil {
			cb := a.cfg.OnBooted
			goLogged(a.cfg.Log, "OnBooted callback", func() { cb(m.Took, m.Missed) })
		}
		a.bootedUnderTest(ctx, m)
	case *messages.RollbackRequested:
		a.rollbacks = append(a.rollbacks, m.Reason)
		a.cfg.Log.Error("rollback requested", "rev", m.Rev, "reason", m.Reason)
		if a.cfg.OnRollback != nil {
			cb := a.cfg.OnRollback
			goLogged(a.cfg.Log, "OnRollback callback", func() { cb(m.Reason) })
		}
		a.rollbackRequested(ctx, m)
	case *messages.ContainerAction:
		a.forward(ctx, &messages.ActionResult{Outcome: messages.NotFound})
	case *messages.GetContainers:
		a.forward(ctx, &messages.ContainersReply{})
	case *messages.GetGroups:
		a.forward(ctx, &messages.GroupsReply{})
	case *messages.SignalContainer:
		a.forward(ctx, &messages.SignalResult{Refusal: messages.SignalNoRevision})
	case *messages.Describe:
		n := &messages.Node{Path: ctx.Self().Id, Kind: "root", Status: "running", Since: a.since,
			Info: map[string]string{"rev": a.cfg.Rev}}
		if a.cfg.State == nil {
			n.Status = "safe-mode"
		}
		if b := a.booted; b != nil {
			n.Info["booted_in"] = b.Took.Round(time.Millisecond).String()
			if len(b.Missed) > 0 {
				n.Info["boot_missed"] = strings.Join(b.Missed, ",")
			}
		}
		if len(a.reboots) > 0 {
			n.Status = "reboot-requested"
			n.LastFailure = a.reboots[len(a.reboots)-1]
		}
		if len(a.rollbacks) > 0 {
			n.Status = "rollback-requested"
			n.LastFailure = a.rollbacks[len(a.rollbacks)-1]
		}
		if a.up.safeMode != "" {
			n.Status, n.LastFailure = "safe-mode", a.up.safeMode
		}
		if tr := a.up.try; tr != nil {
			n.Info["update"] = tr.rev + " " + string(tr.progress.Status)
		}
		if in := a.up.installing; in != nil {
			n.Info["update"] = in.run.Rev + " installing"
		}
		if a.rev != nil {
			n.ChildIDs = []string{a.rev.Id}
		}
		ctx.Respond(n)
	}
}

// stopForShutdown stops the revision for the shutdown asked for
// (a.shutdown), then finishes it.
func (a *rootActor) stopForShutdown(ctx actor.Context) {
	if a.up.next != nil {
		return // the transition's end stops the next revision
	}
	if a.rev == nil {
		a.finishShutdown(ctx)
		return
	}
	ctx.Request(a.rev, &messages.StopRevision{})
}

func (a *rootActor) startRevision(ctx actor.Context) {
	if a.cfg.State == nil || a.up.safeMode != "" {
		// Safe mode: the revision cannot run, but the device stays up and
		// answers on the control socket.
		return
	}
	// A supervisor started again by PID 1 takes over what the previous
	// one left (adopt.go), once: a root restarted later starts afresh.
	from := a.cfg.Adopted.take()
	if from != nil {
		// The revisions adopted containers run on, as a handover
		// would name them: GC must keep them.
		a.up.backing = backing(from, a.cfg.Rev)
	}
	a.spawnRevision(ctx, from)
}

// spawnRevision spawns the actor of the revision cfg names, with what the
// previous revision handed over (nil at boot).
func (a *rootActor) spawnRevision(ctx actor.Context, from *handover) {
	if a.cfg.OnRevision != nil {
		// Before the spawn: the record must name the revision by the
		// time any container of it starts, and its first books, which
		// its start hands to OnBooks, must not reach a record still
		// naming the previous revision (it starts afresh for the new
		// one, wiping them).
		a.cfg.OnRevision(a.cfg.Rev, a.cfg.State, a.cfg.Trying)
	}
	props := newRevisionProps(*a.cfg, from, a.up.held.of(a.cfg.Rev, from))
	pid, err := ctx.SpawnNamed(props, revisionActorName(a.cfg.Rev))
	if err != nil {
		a.cfg.Log.Error("spawn revision", "rev", a.cfg.Rev, "err", err)
		return
	}
	a.rev = pid
}

// revisionActorName is the revision actor's name: "rev-" and the revision,
// whose slashes (locals/NAME) would read as levels of the actor tree.
func revisionActorName(rev string) string {
	return "rev-" + strings.ReplaceAll(rev, "/", ":")
}

func (a *rootActor) forward(ctx actor.Context, empty any) {
	switch {
	case a.rev == nil:
		ctx.Respond(empty)
	case a.revEnding:
		a.held = append(a.held, heldRequest{msg: ctx.Message(), sender: ctx.Sender(), empty: empty})
	default:
		ctx.Forward(a.rev)
	}
}

// endRevision stops the running revision actor once it has served what is
// queued for it (a poison pill, not a stop, which would drop those
// requests unanswered), and holds what comes for it from now on.
func (a *rootActor) endRevision(ctx actor.Context) {
	a.revEnding = true
	ctx.Poison(a.rev)
}

// releaseHeld passes the requests held while a revision ended to the one
// that runs now, or answers them as root does with none.
func (a *rootActor) releaseHeld(ctx actor.Context) {
	held := a.held
	a.held = nil
	for _, h := range held {
		switch {
		case a.rev == nil:
			if h.sender != nil {
				ctx.Send(h.sender, h.empty)
			}
		case h.sender == nil:
			ctx.Send(a.rev, h.msg)
		default:
			ctx.RequestWithCustomSender(a.rev, h.msg, h.sender)
		}
	}
}

func (a *rootActor) finishShutdown(ctx actor.Context) {
	if a.shutdown != nil {
		// Every container is down: the engine's kept images go too.
		if a.cfg.Engine != nil {
			if err := a.cfg.Engine.Close(); err != nil {
				a.cfg.Log.Warn("release images", "err", err)
			}
		}
		ctx.Send(a.shutdown, &messages.ShutdownDone{})
		a.shutdown = nil
	}
}

// HandleFailure supervises the revision: a panic in the revision actor is a
// bug; it is restarted (which restarts its containers; resumed during a
// handover) a few times, then left stopped so that the device stays up
// with the control socket answering.
func (a *rootActor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	a.cfg.Log.Error("revision actor failed", "actor", child.Id, "reason", fmt.Sprint(reason))
	if rs.NumberOfFailures(time.Minute) < 3 {
		rs.Fail()
		if a.up.next != nil {
			// In the middle of a handover: a new incarnation would
			// lose the records detached so far (their containers
			// would run on beside the ones it starts, owned by no
			// one) and the answer root waits for. The revision goes
			// on from where it was; the message that panicked is lost.
			sup.ResumeChildren(child)
			return
		}
		sup.RestartChildren(child)
		return
	}
	a.cfg.Log.Error("revision keeps failing: safe mode, containers stopped")
	sup.StopChildren(child)
}

// guardian keeps root alive whatever happens to it: PID 1 must not lose its
// supervisor. Root restarts on a panic; its state is rebuilt from Config.
// During a non-reboot update's handover (up.next) it is resumed instead:
// a restart stops the revision, and the records it detached so far, whose
// containers run on, would be lost with it, beside a new revision that
// starts them again, and the update would wait for good. up is root's
// update state; HandleFailure runs on root's goroutine, which alone
// changes it.
type guardian struct {
	log *slog.Logger
	up  *rootUpdate
}

func (g guardian) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	if g.up != nil && g.up.next != nil {
		g.log.Error("root actor failed during a handover; resuming it", "reason", fmt.Sprint(reason), "failures", rs.FailureCount())
		rs.Fail()
		sup.ResumeChildren(child)
		return
	}
	g.log.Error("root actor failed; restarting it", "reason", fmt.Sprint(reason), "failures", rs.FailureCount())
	rs.Fail()
	sup.RestartChildren(child)
}

var _ actor.SupervisorStrategy = (*revisionActor)(nil)
var _ actor.SupervisorStrategy = (*rootActor)(nil)
var _ actor.SupervisorStrategy = guardian{}

// Config is what the actor tree needs to run a revision.
type Config struct {
	Rev string
	// State is the revision to run; nil starts root in safe mode (no
	// revision, control socket only).
	State  *state.State
	Engine Engine
	Log    *slog.Logger
	// StopTimeout is the SIGTERM → SIGKILL grace per container.
	StopTimeout time.Duration
	// HandoverTimeout bounds a non-reboot transition's handover (the
	// running revision stopping its changed containers): past it, the
	// transition is given up for a reboot. 0: DefaultHandoverTimeout.
	HandoverTimeout time.Duration
	// OnReboot is called (in its own goroutine) when the revision asks for
	// a reboot.
	OnReboot func(reason string)
	// OnRollback is called (in its own goroutine) when the revision being
	// tried asks for a rollback.
	OnRollback func(reason string)
	// OnBooted is called (in its own goroutine) once the boot of the
	// revision is over: every container reached its status goal, timed
	// out or gave up; missed names those that did not reach it.
	OnBooted func(took time.Duration, missed []string)
	// Trying says the revision is an update being tried (pv_try): a
	// container that gives up then means rollback.
	Trying bool
	// MaxRecoveryDelay caps auto-recovery delays
	// (PV_AUTO_RECOVERY_MAX_DELAY).
	MaxRecoveryDelay time.Duration
	// PoolNet sets up the IPAM pools' bridges and rules; nil sets up
	// nothing (the pools still hand out leases).
	PoolNet PoolNet
	// Links builds xconnect links' data plane; nil makes no link (the
	// graph is still computed and shown).
	Links xconnect.Plane
	// Ingress opens device.json's ingress listeners; nil opens none.
	Ingress IngressPlane

	// Updates is the device storage and bootloader; nil runs Rev and
	// nothing else (no POST /commands LOCAL_RUN), and a rollback request
	// is only recorded and handed to OnRollback.
	Updates Updates
	// CheckRevision, when set, is what a revision must also pass before
	// LOCAL_RUN installs it, past its validation: the runtime's check
	// of what it would run (engine.Engine.Check).
	CheckRevision func(rev string, st *state.State) error
	// TryProgress is Rev's progress when Trying: where the try/commit loop
	// starts (package update's Resume decided it at boot).
	TryProgress *storage.Progress
	// NewEngine makes the engine of a revision a non-reboot update
	// starts; nil makes every update a reboot transition.
	NewEngine func(rev string, st *state.State) Engine
	// CommitDelay is PV_UPDATER_COMMIT_DELAY: how long a tried revision
	// stays TESTING before it is committed.
	CommitDelay time.Duration
	// Tunables, when set, gives CommitDelay, MaxRecoveryDelay and
	// GroupTimeout as the configuration has them at the moment they are
	// used (a commit timer armed, a revision spawned, a group started): the control socket may change them
	// while the device runs (user-meta, commands), and a copy made at boot
	// would ignore the change while GET /config2 showed it. Nil: the two
	// fields as set.
	Tunables func() Tunables
	// OnPoweroff is called (in its own goroutine) when a power-off is
	// requested (POST /commands POWEROFF_DEVICE).
	OnPoweroff func(reason string)

	// OnRevision is called, from root, each time a revision is spawned
	// (at boot and at each non-reboot transition), with whether it is
	// under test: a supervisor that PID 1 starts again resumes it.
	OnRevision func(rev string, st *state.State, trying bool)
	// OnBooks is called, from the revision, whenever a container's books
	// change (books.go), for a supervisor that PID 1 starts again.
	OnBooks func(Books)
	// Adopted is what this supervisor took over from the previous one
	// (Adopt); nil at boot.
	Adopted *Adoption

	// board is where the revision publishes its rows; Start makes it.
	board *board
}

// Tunables are the settings of Config the control socket may change while
// the device runs.
type Tunables struct {
	CommitDelay, MaxRecoveryDelay time.Duration
	// GroupTimeout is PV_UPDATER_GOALS_TIMEOUT, the goal timeout of a
	// group that declares none (state.Group.TimeoutUnset); 0: the one
	// its state was parsed with.
	GroupTimeout time.Duration
}

// tunables returns the settings as they are now (see Config.Tunables).
func (c *Config) tunables() Tunables {
	if c.Tunables != nil {
		return c.Tunables()
	}
	return Tunables{CommitDelay: c.CommitDelay, MaxRecoveryDelay: c.MaxRecoveryDelay}
}

package actors

import (
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/supervision"
	"github.com/pantavisor/pv/xconnect"
)

// revisionActor runs one revision: it spawns one pool actor per IPAM pool
// and one container actor per container, starts groups in order (a group
// when every earlier group reached its goals or timed out), supervises its
// children (HandleFailure) and stops them in reverse: containers group by
// group, then the pools.
type revisionActor struct {
	rev    string
	st     *state.State
	engine Engine
	log    *slog.Logger
	// stopTimeout is the SIGTERM grace given to each container on stop.
	stopTimeout time.Duration
	// trying says this revision is an update being tried: a container
	// that gives up asks for a rollback instead of FAILED or a reboot.
	trying   bool
	maxDelay time.Duration
	// groupTimeout is PV_UPDATER_GOALS_TIMEOUT as it is when a group
	// starts, for the groups with no timeout of their own; 0: the one
	// the state was parsed with.
	groupTimeout func() time.Duration
	poolNet      PoolNet
	links        xconnect.Plane
	ingress      IngressPlane
	// graph is the state's xconnect links, in graph order.
	graph []xconnect.Link

	// order is every child in spawn order; byKey finds one by kind and
	// name. They hold the same records.
	order []*child
	byKey map[childKey]*child

	since time.Time
	// self is the revision's PID, for timers that report back.
	self *actor.PID
	// booted: RevisionBooted was sent (once per revision run).
	booted bool

	stopping  bool
	stopGroup int
	stopFor   *actor.PID
	// handing is the handover to the next revision under way, nil
	// otherwise; from is what the previous revision handed to this one.
	handing *handing
	from    *handover
	// held names the containers stopped through the API: their goal is
	// STOPPED (goalStopped) until the API starts them. It outlives the
	// actor's incarnations and root's (heldStops), and the next revision
	// takes it over for the containers it keeps, so that neither a
	// restart after a Go panic nor a non-reboot update starts what the
	// API stopped.
	held map[string]bool
	// onBooks is Config.OnBooks; books what it was last given.
	onBooks func(Books)
	books   Books
	// board is where the rows are published for GET /containers and
	// /groups (board.go).
	board *board
}

// retryDue fires when a container's backoff delay is over.
type retryDue struct {
	name string
	gen  int
}

// groupTimedOut fires when a container has not reached its goal within its
// group's timeout.
type groupTimedOut struct{ name string }

// newRevisionProps makes the revision actor of cfg.Rev; from is what the
// previous revision handed over (nil at boot). Only the first incarnation
// takes it over: a revision actor restarted after a Go panic has stopped
// its children, and with them the containers, so it starts afresh, but
// for the containers stopped through the API: held, which root keeps
// (heldStops).
func newRevisionProps(cfg Config, from *handover, held map[string]bool) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		r := &revisionActor{rev: cfg.Rev, st: cfg.State, engine: cfg.Engine, log: cfg.Log.With("rev", cfg.Rev),
			stopTimeout: cfg.StopTimeout, trying: cfg.Trying, maxDelay: cfg.tunables().MaxRecoveryDelay, poolNet: cfg.PoolNet,
			links: cfg.Links, ingress: cfg.Ingress, from: from, held: held, board: cfg.board, onBooks: cfg.OnBooks,
			groupTimeout: func() time.Duration { return cfg.tunables().GroupTimeout }}
		from = nil
		return r
	})
}

func (r *revisionActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *messages.GetContainers, *messages.GetGroups, *messages.Describe, *messages.SignalContainer:
		// Queries change nothing to publish.
	default:
		defer func() {
			r.syncLinks(ctx.ActorSystem())
			r.publish()
			r.keepBooks()
		}()
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.start(ctx)
	case *actor.Restarting:
		// The next incarnation starts from the state, its children
		// made anew: it knows nothing of the API's requests waiting
		// here, which would otherwise wait out their minute.
		r.cancelPending(ctx.ActorSystem(), "the revision restarted after an internal error")
	case *actor.Stopping:
		r.cancelPending(ctx.ActorSystem(), "the revision stopped")
	case *messages.ContainerStatusChanged:
		r.statusChanged(ctx, m)
	case *groupTimedOut:
		if ch := r.container(m.name); ch != nil && !ch.ctr.timedOut && !r.reached(ch) {
			r.log.Warn("container did not reach its goal in time", "container", m.name)
			ch.ctr.timedOut = true
			r.evaluate(ctx)
		}
	case *messages.StopRevision:
		r.stopping, r.stopFor = true, ctx.Sender()
		r.cancelPending(ctx.ActorSystem(), "the revision is stopping")
		r.stopGroup = len(r.st.Groups) - 1
		r.stopNextGroup(ctx)
	case *messages.GetContainers:
		ctx.Respond(&messages.ContainersReply{Containers: r.containers()})
	case *messages.GetGroups:
		ctx.Respond(&messages.GroupsReply{Groups: r.groups()})
	case *messages.SignalContainer:
		ch := r.container(m.Name)
		if ch == nil || ch.pid == nil {
			ctx.Respond(&messages.SignalResult{Refusal: messages.SignalNoContainer, Detail: m.Name})
			return
		}
		ctx.Forward(ch.pid)
	case *retryDue:
		r.retry(ctx, m)
	case *messages.PoolStopped:
		r.poolStopped(ctx, m)
	case *ingressClosed:
		if ch := r.byKey[childKey{kindIngress, m.addr}]; ch != nil {
			ch.ing.closed = true
			if r.stopping {
				r.stopNextGroup(ctx)
			}
		}
	case *messages.ContainerAction:
		r.action(ctx, m)
		r.evaluate(ctx) // a stop or start through the API changes the container's goal
	case *messages.Describe:
		ctx.Respond(r.describe(ctx))
	case hang:
		r.log.Error("revision actor hanging on purpose (a test of the watchdog's probe)")
		<-m.until
	case *messages.TryOver:
		r.trying = false
	case *handOver:
		r.handOver(ctx, m)
	case *detached:
		r.detachedReply(ctx, m)
	}
}

func (r *revisionActor) start(ctx actor.Context) {
	r.since = time.Now()
	r.self = ctx.Self()
	r.order, r.byKey = nil, map[childKey]*child{}
	for _, p := range r.st.Pools {
		peers := poolPeers(r.st, p)
		rec := &poolRecord{}
		if h := r.from; h != nil && h.pools[p.Name] != nil {
			rec = h.pools[p.Name]
		}
		ch := &child{kind: kindPool, name: p.Name, pool: &poolChild{spec: p, rec: rec}}
		props := newPoolProps(p, peers, r.st, ch.pool.rec, r.poolNet, r.log)
		r.add(ch, func() (*actor.PID, error) { return ctx.SpawnNamed(props, poolActorName(p.Name)) })
	}
	group := map[string]int{}
	for i, g := range r.st.Groups {
		group[g.Name] = i
	}
	for _, c := range r.st.Containers {
		rec := &containerRecord{spec: c}
		if c.Network != nil && c.Network.Mode == state.NetPool {
			if pool := r.byKey[childKey{kindPool, c.Network.Pool}]; pool != nil {
				rec.pool = pool.pid
			}
		}
		ch := &child{kind: kindContainer, name: c.Name, ctr: &containerChild{
			spec: c, view: c.View(), group: group[c.Group],
			row:      &messages.ContainerStatusChanged{Name: c.Name, Status: messages.StatusInstalled},
			recovery: recovery{policy: supervision.PolicyFor(c, r.maxDelay)},
		}}
		rec, adopted := r.adopt(rec, ch)
		if r.held[c.Name] && !adopted {
			// Stopped through the API before this incarnation: it
			// stays down until the API starts it. The new actor
			// reports STOPPED, not INSTALLED.
			rec.status, ch.ctr.asked, ch.ctr.row.Status = messages.StatusStopped, true, messages.StatusStopped
		}
		if rec.origin == "" {
			// Adopted from a dead supervisor: taken to be this
			// revision's, whose engine adopted its mount.
			rec.origin = r.rev
		}
		props := newContainerProps(rec, r.engine, r.rev, r.log, adopted)
		r.add(ch, func() (*actor.PID, error) { return ctx.SpawnNamed(props, c.Name) })
		switch {
		case ch.pid == nil:
			ch.ctr.row.Status, ch.ctr.row.Err = messages.StatusFailed, ch.gone
		case adopted && r.held[c.Name] && rec.status != messages.StatusStopped:
			// Stopped through the API while the previous revision
			// handed it over: that revision's actor had given its
			// record away, so the stop is carried out here.
			ch.ctr.asked = true
			ctx.Send(ch.pid, &messages.StopContainer{Timeout: r.stopTimeout})
			r.armGoalTimer(ctx, ch)
		case adopted && ch.ctr.asked && !r.reached(ch):
			// Up but short of its goal (READY not signalled yet):
			// its group's timeout runs again here, or this revision
			// would wait for the goal for good.
			r.armGoalTimer(ctx, ch)
		}
	}
	r.graph = xconnect.Graph(r.st)
	if r.links != nil {
		for _, l := range r.graph {
			ch := &child{kind: kindLink, name: l.Key(), link: &linkChild{link: l}}
			props := newLinkProps(l, r.links, r.log)
			r.add(ch, func() (*actor.PID, error) { return ctx.SpawnNamed(props, linkActorName(l)) })
		}
	}
	if r.ingress != nil {
		for _, l := range ingressListeners(r.st) {
			ch := &child{kind: kindIngress, name: l.Addr, ing: &ingressChild{listener: l}}
			props := newIngressProps(l, r.ingress, r.log)
			r.add(ch, func() (*actor.PID, error) { return ctx.SpawnNamed(props, ingressActorName(l.Addr)) })
		}
	}
	r.evaluate(ctx)
}

// adopt returns the record the previous revision handed over for the
// container, given this revision's spec and pool, or rec when there is
// none. A record taken over is up already: the row shows where it stands
// and the container is not asked to start.
func (r *revisionActor) adopt(rec *containerRecord, ch *child) (*containerRecord, bool) {
	if r.from == nil || r.from.containers[ch.name] == nil {
		return rec, false
	}
	old := r.from.containers[ch.name]
	old.spec, old.pool = rec.spec, rec.pool
	if (old.status == messages.StatusStopped || old.status == messages.StatusFailed) && !r.held[ch.name] {
		// It ended (on its own, or it gave up), and not through the
		// API: the update is tried with it started afresh, as after a
		// reboot update. Waiting for its goal, this revision would
		// wait with no group timer to end the wait; a FAILED one would
		// fail the update at once. Its actor reports INSTALLED, not
		// the old end, which would overtake its new start.
		old.status, old.retries = messages.StatusInstalled, 0
	}
	// Asked already unless it never left INSTALLED (its group was still
	// blocked, or it ended): then this revision's group order starts it.
	ch.ctr.asked = old.status != "" && old.status != messages.StatusInstalled
	row := ch.ctr.row
	row.Status, row.Since, row.StartedAt, row.LastExit, row.Err, row.Lease = old.status, old.since, old.startedAt, old.lastExit, old.err, old.lease
	ch.ctr.recovery.history.Retries = old.retries
	if old.run != nil && old.running {
		row.Pid = old.run.Pid()
	}
	return old, true
}

// checkBooted tells root, once, that the boot of the revision is over:
// every container reached its status goal, or its group's timeout passed,
// or it gave up (FAILED). The containers that did not reach their goal are
// named, for whoever decides what a boot must achieve.
func (r *revisionActor) checkBooted(ctx actor.Context) {
	if r.booted || r.stopping {
		return
	}
	var missed []string
	for ch := range r.children(kindContainer) {
		switch {
		case r.reached(ch):
		case ch.ctr.timedOut || ch.ctr.row.Status == messages.StatusFailed:
			missed = append(missed, ch.name)
		default:
			return // still on its way
		}
	}
	r.booted = true
	r.publish() // whoever hears this may read the board next
	ctx.Send(ctx.Parent(), &messages.RevisionBooted{Rev: r.rev, Took: time.Since(r.since), Missed: missed})
}

func (r *revisionActor) reached(ch *child) bool {
	return achieved(ch.ctr.row.Status, r.goal(ch))
}

// goal is the container's goal: its state's, or STOPPED after a stop
// through the API.
func (r *revisionActor) goal(ch *child) state.Goal {
	if r.held[ch.name] {
		return goalStopped
	}
	return ch.ctr.spec.StatusGoal
}

func (r *revisionActor) members() []member {
	ms := make([]member, 0, len(r.st.Containers))
	for ch := range r.children(kindContainer) {
		c := ch.ctr
		ms = append(ms, member{group: c.group, status: c.row.Status, goal: r.goal(ch), timedOut: c.timedOut})
	}
	return ms
}

// evaluate starts every container whose group is open and that was not asked
// yet. It is level-triggered: called after every change, it compares what is
// with what should be.
func (r *revisionActor) evaluate(ctx actor.Context) {
	if r.stopping {
		return
	}
	ms := r.members()
	for gi := range r.st.Groups {
		if !groupOpen(gi, ms) {
			break
		}
		for ch := range r.children(kindContainer) {
			if ch.ctr.group != gi || ch.ctr.asked || ch.pid == nil {
				continue
			}
			ch.ctr.asked = true
			ctx.Send(ch.pid, &messages.StartContainer{})
			r.armGoalTimer(ctx, ch)
		}
	}
	r.checkBooted(ctx)
}

// armGoalTimer gives the container its group's timeout to reach its goal
// (groupTimedOut).
func (r *revisionActor) armGoalTimer(ctx actor.Context, ch *child) {
	g := r.st.Groups[ch.ctr.group]
	timeout := time.Duration(g.Timeout) * time.Second
	if d := r.groupTimeout(); g.TimeoutUnset && d > 0 {
		timeout = d
	}
	name, self, sys := ch.name, ctx.Self(), ctx.ActorSystem()
	time.AfterFunc(timeout, func() { sys.Root.Send(self, &groupTimedOut{name: name}) })
}

func (r *revisionActor) statusChanged(ctx actor.Context, m *messages.ContainerStatusChanged) {
	ch := r.container(m.Name)
	if ch == nil {
		return
	}
	if m.Seq != 0 && m.Seq <= ch.ctr.decidedSeq {
		// Sent before the failure that the row's decision answered (a
		// STARTED just before an exit): it would show the container up
		// during its back-off, or have a stopping revision stop it again.
		return
	}
	ch.ctr.row = m
	ch.ctr.settling = false // the actor's own word, after the decision
	if r.stopping {
		r.stopNextGroup(ctx)
		return
	}
	rc := &ch.ctr.recovery
	if rc.restartAfterStop && m.Status == messages.StatusStopped {
		rc.restartAfterStop = false
		rc.history = supervision.History{}
		ctx.Send(ch.pid, &messages.StartContainer{})
	}
	if rc.restartAfterStop && m.Stuck {
		// The restart's stop cannot end while the kernel holds the
		// processes: the restart fails now, rather than wait out the
		// request's minute; the container stays down once they end.
		rc.restartAfterStop = false
		r.answerPending(ctx.ActorSystem(), ch, messages.StartFailed, m.Err)
	}
	if rc.pending != nil {
		switch {
		case achieved(m.Status, ch.ctr.spec.StatusGoal) || m.Status == messages.StatusStarted:
			r.answerPending(ctx.ActorSystem(), ch, messages.Done, "")
		case m.Status == messages.StatusFailed:
			r.answerPending(ctx.ActorSystem(), ch, messages.StartFailed, m.Err)
		}
	}
	r.evaluate(ctx)
}

// answerPending answers the PUT /containers start or restart waiting on a
// container, if any.
func (r *revisionActor) answerPending(sys *actor.ActorSystem, ch *child, o messages.Outcome, detail string) {
	rc := &ch.ctr.recovery
	if rc.pending == nil {
		return
	}
	r.publish() // whoever hears this may read the board next
	sys.Root.Send(rc.pending, &messages.ActionResult{Outcome: o, Detail: detail})
	rc.pending, rc.pendingAction = nil, ""
}

// cancelPending answers every start or restart still waiting: the
// revision is stopping, and no container of it will come up.
func (r *revisionActor) cancelPending(sys *actor.ActorSystem, why string) {
	for ch := range r.children(kindContainer) {
		r.answerPending(sys, ch, messages.Canceled, why)
	}
}

// stopNextGroup stops the highest group that still has containers up, and
// moves down once all of them are STOPPED; once the last group is down,
// the pools remove their bridges and rules, and the revision answers the
// StopRevision.
func (r *revisionActor) stopNextGroup(ctx actor.Context) {
	if !r.handoverStarted() {
		return
	}
	for r.stopGroup >= 0 {
		pending := false
		for ch := range r.children(kindContainer) {
			c := ch.ctr
			if c.group != r.stopGroup || r.kept(ch.name) {
				continue
			}
			switch c.row.Status {
			case messages.StatusStopped:
				if c.settling {
					pending = true // its release reports STOPPED
				}
				continue
			case messages.StatusStopping:
				// Unless its processes survived SIGKILL: the kernel
				// holds them (uninterruptible sleep), and its
				// teardown waits for them for as long as that
				// lasts. The stop goes on without it; its actor
				// stopping for good leaves the teardown. Not a
				// handover: the next revision would start it
				// again in the places it still holds.
				if c.row.Stuck && r.handing != nil {
					r.cannotHandOver(ctx, ch.name)
					return
				}
				pending = pending || !c.row.Stuck
				continue
			}
			if !c.asked && c.row.Status == messages.StatusInstalled {
				continue // never asked up
			}
			if ch.pid == nil {
				continue // its actor is gone; nothing will report
			}
			pending = true
			c.asked = false
			c.row.Status = messages.StatusStopping
			// A container waiting for a retry has a suspended mailbox:
			// the retry is cancelled and it settles before it stops.
			r.cancelRetry(ctx, ch, "revision stopping")
			ctx.Send(ch.pid, &messages.StopContainer{Timeout: r.stopTimeout})
		}
		if pending {
			return
		}
		r.log.Info("group stopped", "group", r.st.Groups[r.stopGroup].Name)
		r.stopGroup--
	}
	// Containers are down. The listeners close first (told as the stop
	// began): their kernel paths lead onto the pools' bridges, and a
	// revision that says it stopped has left no rule behind.
	for ch := range r.children(kindIngress) {
		if ch.pid != nil && !ch.ing.closed {
			return // the next ingressClosed comes back here
		}
	}
	// Now the pools remove their bridges and rules, or, in a handover,
	// give them to the next revision.
	if r.handing != nil && r.detachPools(ctx) {
		return // the last detached answer comes back here
	}
	for ch := range r.children(kindPool) {
		p := ch.pool
		if p.stopped || ch.pid == nil {
			continue
		}
		if !p.stopSent {
			p.stopSent = true
			ctx.Request(ch.pid, &messages.StopPool{})
		}
		return // the next PoolStopped comes back here
	}
	switch {
	case r.stopFor == nil:
	case r.handing != nil:
		r.finishHandover(ctx)
	default:
		r.publish() // whoever hears this may read the board next
		ctx.Send(r.stopFor, &messages.RevisionStopped{Rev: r.rev})
		r.stopFor = nil
	}
}

func (r *revisionActor) poolStopped(ctx actor.Context, m *messages.PoolStopped) {
	ch := r.byKey[childKey{kindPool, m.Name}]
	if ch == nil {
		return
	}
	if m.Err != "" {
		r.log.Error("pool teardown incomplete", "pool", m.Name, "err", m.Err)
	}
	ch.pool.stopped = true
	if r.stopping {
		r.stopNextGroup(ctx)
	}
}

// HandleFailure is the revision's supervision of its children; each kind
// has its rule. The failing child is found by its PID; one the revision
// does not know is stopped, since nothing would look after it.
func (r *revisionActor) HandleFailure(sys *actor.ActorSystem, sup actor.Supervisor, pid *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	defer func() {
		r.syncLinks(sys)
		r.publish()
	}()
	ch := r.childOf(pid)
	if ch == nil {
		r.log.Error("unknown child actor failed; stopping it", "actor", pid.Id, "reason", fmt.Sprint(reason))
		sup.StopChildren(pid)
		return
	}
	switch ch.kind {
	case kindContainer:
		r.containerFailed(sys, sup, ch, rs, reason)
	case kindPool:
		r.poolFailed(sup, ch, rs, reason)
	case kindLink:
		// A link actor fails only by a Go panic; its new incarnation
		// starts with no link and is told the ends again.
		r.log.Error("link actor panicked", "link", ch.name, "panic", fmt.Sprint(reason))
		r.restartAfterPanic(sup, ch, rs, reason)
		ch.link.told = false
	case kindIngress:
		r.log.Error("ingress actor panicked", "ingress", ch.name, "panic", fmt.Sprint(reason))
		// The new incarnation binds again: a stopping revision tells it
		// to close again, and waits for that. One stopped for good
		// closed its listener stopping: nothing to wait for.
		ch.ing.told, ch.ing.stopped, ch.ing.closed = false, false, false
		if !r.restartAfterPanic(sup, ch, rs, reason) {
			sys.Root.Send(r.self, &ingressClosed{addr: ch.name})
		}
	}
}

// containerFailed: a container that exited or could not start is a domain
// event, for its recovery policy (package supervision) to restart after a
// backoff or give up. Anything else is a Go panic in the container actor
// (a bug): it is restarted within panicBudget and re-adopts the running
// container.
func (r *revisionActor) containerFailed(sys *actor.ActorSystem, sup actor.Supervisor, ch *child, rs *actor.RestartStatistics, reason any) {
	switch why := reason.(type) {
	case *messages.ContainerExited:
		ch.ctr.decidedSeq = why.Seq
		row, ran := ch.ctr.row, time.Duration(0)
		exit := why.Exit
		row.LastExit, row.Pid = &exit, 0
		if !why.StartedAt.IsZero() {
			// From the failure, not the row: the run's STARTED may be
			// one of the statuses the failure overtook.
			row.StartedAt = why.StartedAt
			ran = why.Exit.At.Sub(why.StartedAt)
		}
		r.decide(sys, sup, ch, supervision.Exit{Failed: why.Exit.Failed(), Ran: ran}, why.Error())
	case *messages.ContainerStartFailed:
		ch.ctr.decidedSeq = why.Seq
		r.decide(sys, sup, ch, supervision.Exit{Failed: true}, why.Error())
	default:
		r.log.Error("container actor panicked", "container", ch.name, "panic", fmt.Sprint(reason))
		if !r.restartAfterPanic(sup, ch, rs, reason) {
			ch.ctr.row.Status, ch.ctr.row.Err = messages.StatusFailed, ch.gone
			r.answerPending(sys, ch, messages.StartFailed, ch.gone)
		}
	}
}

// poolFailed: a pool actor fails only by a Go panic (a setup that fails is
// a result, shown on the pool). It is restarted within panicBudget and
// re-adopts its bridge and leases from its record; past the budget it is
// stopped, which removes what it set up, and its containers' next starts
// fail for want of an address, each under its own recovery policy.
func (r *revisionActor) poolFailed(sup actor.Supervisor, ch *child, rs *actor.RestartStatistics, reason any) {
	r.log.Error("pool actor panicked", "pool", ch.name, "panic", fmt.Sprint(reason))
	r.restartAfterPanic(sup, ch, rs, reason)
}

// decide applies the recovery policy to one exit or start failure.
func (r *revisionActor) decide(sys *actor.ActorSystem, sup actor.Supervisor, ch *child, e supervision.Exit, why string) {
	rc := &ch.ctr.recovery
	if r.stopping {
		r.giveUp(sys, sup, ch, e.Failed, why)
		return
	}
	if r.held[ch.name] || rc.restartAfterStop {
		// Stopped or restarted through the API, and the stop still on its
		// way to the actor when the container exited or failed to start:
		// it ended as asked, and a restart starts it once that stop is
		// through. Its policy would start it again (a restart would then
		// be answered as failed), or give up and roll a tried revision
		// back, for a container the API was taking down.
		r.log.Info("container ended as it was being stopped through the API", "container", ch.name, "reason", why)
		r.settle(sys, sup, ch, messages.StatusStopped, "")
		return
	}
	d := supervision.Decide(rc.policy, rc.history, e)
	rc.history.Retries = d.Retry
	if !d.Restart {
		if rc.policy.Kind != supervision.No {
			why = why + "; " + d.Reason
		}
		r.giveUp(sys, sup, ch, e.Failed, why)
		return
	}
	rc.suspended = true
	rc.retryGen++
	rc.nextRetryAt = time.Now().Add(d.Delay)
	row := ch.ctr.row
	row.Status, row.Pid, row.Err = messages.StatusRecovering, 0, why
	r.log.Info("container will be restarted", "container", ch.name, "retry", d.Retry, "delay", d.Delay, "reason", why)
	r.answerPending(sys, ch, messages.StartFailed, fmt.Sprintf("%s; retry %d in %v", why, d.Retry, d.Delay))
	name, gen, self := ch.name, rc.retryGen, r.self
	time.AfterFunc(d.Delay, func() { sys.Root.Send(self, &retryDue{name: name, gen: gen}) })
}

// retry restarts a container actor whose backoff is over, unless a stop or
// a newer failure overtook it.
func (r *revisionActor) retry(ctx actor.Context, m *retryDue) {
	ch := r.container(m.name)
	if ch == nil || ch.pid == nil || r.stopping {
		return
	}
	rc := &ch.ctr.recovery
	if !rc.suspended || rc.retryGen != m.gen {
		return
	}
	rc.suspended = false
	rc.nextRetryAt = time.Time{}
	ctx.(actor.Supervisor).RestartChildren(ch.pid)
}

// giveUp settles a container that will not be restarted: STOPPED after a
// clean exit, FAILED otherwise. A failure while this revision is being
// tried asks root for a rollback; a system container failing outside an
// update asks for a reboot.
func (r *revisionActor) giveUp(sys *actor.ActorSystem, sup actor.Supervisor, ch *child, failed bool, why string) {
	status := messages.StatusStopped
	if failed {
		status = messages.StatusFailed
		r.log.Error("container failed", "container", ch.name, "reason", why)
	} else {
		r.log.Info("container stopped on its own", "container", ch.name)
	}
	r.settle(sys, sup, ch, status, why)
	if !failed || r.stopping {
		return
	}
	r.publish() // root acts on what follows; readers must see the failure
	switch {
	case r.trying:
		r.log.Error("a container could not be started during an update: rollback", "container", ch.name)
		sys.Root.Send(r.parentPID(sys), &messages.RollbackRequested{Rev: r.rev, Reason: "A container could not be started: " + why})
	case ch.ctr.spec.RestartPolicy == state.RestartSystem:
		r.log.Error("system container gave up; reboot required", "container", ch.name, "reason", why)
		sys.Root.Send(r.parentPID(sys), &messages.RebootRequested{Rev: r.rev, Reason: why})
	}
}

// settle ends a container's exit or failed start with status, for good:
// its actor, suspended by the failure, resumes and takes the decision.
func (r *revisionActor) settle(sys *actor.ActorSystem, sup actor.Supervisor, ch *child, status messages.Status, why string) {
	ch.ctr.recovery.suspended = false
	// At once, as RECOVERING is: the exit is in the row already, and it
	// must not show beside the status from before it until the container
	// actor reports the decision back.
	row := ch.ctr.row
	row.Status, row.Since, row.Pid, row.Err = status, time.Now(), 0, why
	ch.ctr.settling = true
	sup.ResumeChildren(ch.pid)
	sys.Root.Send(ch.pid, &messages.RecoveryDecided{Status: status, Reason: why})
}

// action carries out PUT /containers/{name}.
func (r *revisionActor) action(ctx actor.Context, m *messages.ContainerAction) {
	refuse := func(o messages.Outcome, detail string) {
		ctx.Respond(&messages.ActionResult{Outcome: o, Detail: detail})
	}
	ch := r.container(m.Name)
	switch {
	case ch == nil:
		refuse(messages.NotFound, "")
		return
	case ch.ctr.spec.RestartPolicy == state.RestartSystem:
		refuse(messages.NotAllowed, "")
		return
	case ch.pid == nil:
		refuse(messages.WrongState, ch.gone)
		return
	}
	c, rc := ch.ctr, &ch.ctr.recovery
	status := c.row.Status
	up := status == messages.StatusStarted || status == messages.StatusReady ||
		(status == messages.StatusMounted && c.spec.StatusGoal == state.GoalMounted)
	transitional := status == messages.StatusStarting || status == messages.StatusStopping
	switch m.Action {
	case messages.ActionStop:
		ctx.Respond(&messages.ActionResult{})
		r.held[ch.name] = true
		if rc.pending == nil && (status == messages.StatusStopped || status == messages.StatusStopping) {
			return
		}
		// A start or restart still under way is overtaken: the later
		// request wins, and the earlier one is told so.
		r.answerPending(ctx.ActorSystem(), ch, messages.Canceled, "stopped through the API")
		rc.restartAfterStop = false
		if r.cancelRetry(ctx, ch, "stopped through the API") {
			return
		}
		c.asked = true
		ctx.Send(ch.pid, &messages.StopContainer{Timeout: r.stopTimeout})
	case messages.ActionStart, messages.ActionRestart:
		switch {
		case r.stopping:
			refuse(messages.WrongState, "the revision is stopping")
		case transitional || status == messages.StatusRecovering:
			refuse(messages.WrongState, "status "+string(status))
		case rc.pending != nil:
			refuse(messages.WrongState, "a "+rc.pendingAction+" is in progress")
		case up && m.Action == messages.ActionStart:
			delete(r.held, ch.name)
			ctx.Respond(&messages.ActionResult{})
		case up:
			delete(r.held, ch.name)
			rc.pending, rc.pendingAction, rc.restartAfterStop = ctx.Sender(), m.Action, true
			ctx.Send(ch.pid, &messages.StopContainer{Timeout: r.stopTimeout})
		default:
			delete(r.held, ch.name)
			rc.pending, rc.pendingAction = ctx.Sender(), m.Action
			rc.history = supervision.History{} // a manual start re-arms recovery afresh
			c.asked = true
			ctx.Send(ch.pid, &messages.StartContainer{})
		}
	default:
		refuse(messages.InvalidAction, m.Action)
	}
}

func (r *revisionActor) parentPID(sys *actor.ActorSystem) *actor.PID {
	return actor.NewPID(sys.Address(), rootName)
}

func (r *revisionActor) containers() []messages.ContainerInfo {
	out := make([]messages.ContainerInfo, 0, len(r.st.Containers))
	now := time.Now()
	for ch := range r.children(kindContainer) {
		c, t := ch.ctr.spec, ch.ctr.row
		v := &ch.ctr.view
		// Filled in place: the entry is large, a copy per container counts.
		out = append(out, messages.ContainerInfo{})
		info := &out[len(out)-1]
		*info = messages.ContainerInfo{
			Name: c.Name, Group: c.Group, Status: r.displayStatus(ch), StatusGoal: string(r.goal(ch)),
			RestartPolicy: string(c.RestartPolicy), Pid: t.Pid, Roles: v.Roles,
			AutoRecovery: messages.AutoRecovery{
				Type: string(v.AutoRecovery.Type), MaxRetries: v.AutoRecovery.MaxRetries,
				RetryDelay: v.AutoRecovery.RetryDelay, BackoffFactor: v.AutoRecovery.BackoffFactor,
				ResetWindow: v.AutoRecovery.ResetWindow,
			},
			Provides: []any{}, Consumes: []any{}, LastExit: t.LastExit, Error: t.Err,
		}
		if l := t.Lease; l != nil {
			info.IPv4Address, info.MACAddress, info.Pool = l.Addr.String(), l.MAC, l.Pool
		}
		rc := &ch.ctr.recovery
		info.AutoRecovery.CurrentRetries = rc.history.Retries
		if !rc.nextRetryAt.IsZero() {
			next := rc.nextRetryAt
			info.AutoRecovery.NextRetryAt = &next
		}
		for _, p := range v.Provides {
			info.Provides = append(info.Provides, p)
		}
		for _, cs := range v.Consumes {
			info.Consumes = append(info.Consumes, cs)
		}
		if t.Pid > 0 && !t.StartedAt.IsZero() {
			info.UptimeSecs = int64(now.Sub(t.StartedAt).Seconds())
		}
	}
	return out
}

// displayStatus shows BLOCKED for a container waiting on an earlier group,
// as upstream does.
func (r *revisionActor) displayStatus(ch *child) messages.Status {
	s := ch.ctr.row.Status
	if s == messages.StatusInstalled && !ch.ctr.asked && !r.stopping {
		return messages.StatusBlocked
	}
	return s
}

func (r *revisionActor) groups() []messages.GroupInfo {
	ms := r.members()
	i := 0
	for ch := range r.children(kindContainer) {
		ms[i].status = r.displayStatus(ch)
		i++
	}
	out := make([]messages.GroupInfo, 0, len(r.st.Groups))
	for i, g := range r.st.Groups {
		out = append(out, messages.GroupInfo{
			Name: g.Name, StatusGoal: string(g.StatusGoal), RestartPolicy: string(g.RestartPolicy),
			Status: groupStatus(i, ms),
		})
	}
	return out
}

// describe is the revision's node of GET /actors: its live children are
// described by their actors; a child whose actor is gone is described here,
// with the reason, so that its failure stays visible.
// describeSuspended describes a container whose actor is suspended by its
// failure until the revision decides (at once) or its back-off is over:
// it cannot answer, and is no hung actor.
func describeSuspended(ch *child) *messages.Node {
	row, rc, spec := ch.ctr.row, &ch.ctr.recovery, ch.ctr.spec
	n := &messages.Node{Path: ch.pid.Id, Kind: kindContainer.String(), Status: string(row.Status), LastFailure: row.Err,
		Since: row.Since, Info: map[string]string{"group": spec.Group, "goal": string(spec.StatusGoal), "retry": strconv.Itoa(rc.history.Retries)}}
	if !rc.nextRetryAt.IsZero() {
		n.Info["next_retry_at"] = rc.nextRetryAt.UTC().Format(time.RFC3339Nano)
	}
	if row.LastExit != nil {
		n.Info["last_exit"] = row.LastExit.String()
	}
	return n
}

func (r *revisionActor) describe(ctx actor.Context) *messages.Node {
	status := "running"
	if r.stopping {
		status = "stopping"
	}
	n := &messages.Node{Path: ctx.Self().Id, Kind: "revision", Status: status, Since: r.since,
		Info: map[string]string{"rev": r.rev, "containers": fmt.Sprint(len(r.st.Containers))}}
	pools, containers, links := []*child{}, []*child{}, []*child{}
	for _, ch := range r.order {
		switch ch.kind {
		case kindPool:
			pools = append(pools, ch)
		case kindLink, kindIngress:
			links = append(links, ch)
		default:
			containers = append(containers, ch)
		}
	}
	if len(r.graph) > 0 {
		n.Info["links"] = fmt.Sprint(len(r.graph))
	}
	sort.Slice(containers, func(i, j int) bool { return containers[i].name < containers[j].name })
	for _, ch := range slices.Concat(pools, containers, links) {
		if ch.pid != nil {
			n.ChildIDs = append(n.ChildIDs, ch.pid.Id)
			if ch.kind == kindContainer && ch.ctr.recovery.suspended {
				if n.Described == nil {
					n.Described = map[string]*messages.Node{}
				}
				n.Described[ch.pid.Id] = describeSuspended(ch)
			}
			continue
		}
		path := n.Path + "/" + ch.name
		switch ch.kind {
		case kindPool:
			path = n.Path + "/" + poolActorName(ch.name)
		case kindLink:
			path = n.Path + "/" + linkActorName(ch.link.link)
		case kindIngress:
			path = n.Path + "/" + ingressActorName(ch.name)
		}
		n.Children = append(n.Children, &messages.Node{Path: path, Kind: ch.kind.String(), Status: "gone", LastFailure: ch.gone})
	}
	return n
}

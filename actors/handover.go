package actors

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
)

// A non-reboot update replaces the revision actor but not the containers
// that did not change (update.Diff's Keep): actors cannot change parents,
// so the running revision hands their records (containerRecord: the mount
// and the live run; poolRecord: the bridge and the leases) to the next
// revision, whose new actors adopt them as a restarted actor re-adopts
// its own. The containers keep their processes, pids and addresses.
//
//	root ──handOver{stop, keep}──▶ old revision
//	old revision ──detach──▶ each kept container, then each pool
//	old revision stops the changed containers (reverse group order)
//	old revision ──handedOver{records}──▶ root
//	root stops the old revision (its detached actors have nothing to stop)
//	root spawns the next revision with the records

// handOver asks a revision to give way to the next one: stop the
// containers in stop, detach those in keep and its pools, and answer
// root with handedOver.
type handOver struct {
	stop, keep []string
}

// handover is what a revision gives to the next: the records of the
// containers and pools that keep running, by name.
type handover struct {
	containers map[string]*containerRecord
	pools      map[string]*poolRecord
	// held: the containers stopped through the API (revisionActor.held)
	// that the next revision keeps as they are.
	held map[string]bool
}

// handedOver answers handOver once the changed containers are stopped and
// the records detached; h is nil when the revision could not hand over.
type handedOver struct {
	h *handover
}

// detach asks a container or pool actor for its record. The actor keeps
// an empty record, so that its stop tears nothing down.
type detach struct{}

// detached answers detach. A nil record means the actor is in the middle
// of work (a mount, a start, a teardown, a pool setup) and cannot hand it
// over cleanly: the revision stops it instead, and the next revision
// starts it afresh.
type detached struct {
	kind kind
	name string
	ctr  *containerRecord
	pool *poolRecord
}

// handing is a revision's handover under way.
type handing struct {
	h    *handover
	kept map[string]bool
	// same is every container the next revision keeps as it is,
	// handed over (kept) or started afresh there.
	same    map[string]bool
	waiting int // detach answers still due
	pools   bool
	replyTo *actor.PID
}

// handOver starts the handover: every kept container that is up and
// settled is asked for its record; the others are stopped with the
// changed ones once the answers are in.
func (r *revisionActor) handOver(ctx actor.Context, m *handOver) {
	if r.stopping {
		// Already stopping (safe mode): nothing to hand over; root falls
		// back to a reboot, which starts the next revision.
		ctx.Respond(&handedOver{})
		return
	}
	r.stopping = true
	r.cancelPending(ctx.ActorSystem(), "the revision is being replaced")
	hd := &handing{h: &handover{containers: map[string]*containerRecord{}, pools: map[string]*poolRecord{}, held: map[string]bool{}},
		kept: map[string]bool{}, same: map[string]bool{}, replyTo: ctx.Sender()}
	r.handing = hd
	for _, name := range m.keep {
		hd.same[name] = true
		ch := r.container(name)
		if ch == nil || ch.pid == nil || ch.ctr.recovery.suspended || ch.ctr.recovery.pending != nil {
			continue // not settled: stopped below, started afresh by the next revision
		}
		hd.kept[name] = true
		hd.waiting++
		ctx.Request(ch.pid, &detach{})
	}
	r.log.Info("handing over to the next revision", "keep", len(hd.kept), "stop", len(m.stop))
	if hd.waiting == 0 {
		r.stopChanged(ctx)
	}
}

// detachedReply collects one detach answer.
func (r *revisionActor) detachedReply(ctx actor.Context, m *detached) {
	hd := r.handing
	if hd == nil {
		return
	}
	hd.waiting--
	switch {
	case m.kind == kindContainer && m.ctr != nil:
		hd.h.containers[m.name] = m.ctr
	case m.kind == kindContainer:
		delete(hd.kept, m.name) // busy: stop it
	case m.kind == kindPool && m.pool != nil:
		hd.h.pools[m.name] = m.pool
		if ch := r.byKey[childKey{kindPool, m.name}]; ch != nil {
			ch.pool.stopped = true
		}
	}
	if hd.waiting > 0 {
		return
	}
	if !hd.pools {
		r.stopChanged(ctx)
		return
	}
	r.stopNextGroup(ctx)
}

// stopChanged stops every container that is not kept, in reverse group
// order; stopNextGroup skips the kept ones and detaches the pools at the
// end.
func (r *revisionActor) stopChanged(ctx actor.Context) {
	r.stopFor = r.handing.replyTo
	r.stopGroup = len(r.st.Groups) - 1
	r.stopNextGroup(ctx)
}

// handoverStarted says the stop phase of a handover may run: not while
// the kept containers' records are still being detached (a status change
// meanwhile must not start it early).
func (r *revisionActor) handoverStarted() bool {
	return r.handing == nil || r.stopFor != nil
}

// kept says the container was detached for the next revision: the
// revision's stop leaves it alone.
func (r *revisionActor) kept(name string) bool {
	return r.handing != nil && r.handing.kept[name]
}

// detachPools asks every pool that is set up (or has nothing to set up)
// for its record; a pool still setting up is stopped as in a shutdown. It
// reports whether answers are due.
func (r *revisionActor) detachPools(ctx actor.Context) bool {
	hd := r.handing
	if hd.pools {
		return hd.waiting > 0
	}
	hd.pools = true
	for ch := range r.children(kindPool) {
		if ch.pid == nil || ch.pool.stopped {
			continue
		}
		hd.waiting++
		ctx.Request(ch.pid, &detach{})
	}
	return hd.waiting > 0
}

// cannotHandOver gives the handover up: name, a container it stops, has
// processes that survive SIGKILL, which only a reboot ends, and which hold
// the mounts and the state the next revision's container of that name
// would be made in. Root answers a handover refused with a reboot
// (abandonTransition), after which the update is tried; what was detached
// for the next revision runs until then, owned by no actor. The revision
// stays stopping, for root's StopRevision, which goes past name.
func (r *revisionActor) cannotHandOver(ctx actor.Context, name string) {
	hd := r.handing
	r.log.Error("a container stopped for the update has processes that outlive its stop: no handover, the update needs a reboot", "container", name)
	r.handing, r.stopFor = nil, nil
	ctx.Send(hd.replyTo, &handedOver{})
}

// finishHandover answers root with the records.
func (r *revisionActor) finishHandover(ctx actor.Context) {
	hd := r.handing
	// A stop through the API holds in the next revision for the same
	// container, whether handed over or started afresh there, and
	// whether it came before the handover or during it (the next
	// revision then stops it: its actor here had given its record away).
	// A changed container is another one: the update starts it.
	for name := range r.held {
		if hd.same[name] {
			hd.h.held[name] = true
		}
	}
	r.publish()
	ctx.Send(hd.replyTo, &handedOver{h: hd.h})
	r.stopFor = nil
	r.log.Info("handed over", "containers", len(hd.h.containers), "pools", len(hd.h.pools))
}

// detach gives the container's record away when nothing is in flight.
func (a *containerActor) detach(ctx actor.Context) {
	r := a.rec
	reply := &detached{kind: kindContainer, name: r.spec.Name}
	// A run that exited but is not settled yet (its exit is on its way to
	// the revision) is not handed over either, nor one that a stop's
	// teardown or a final decision is bringing down: their ends report to
	// this actor, and the next one would wait for them for good.
	if !r.busy && !r.releasing && !r.stopWanted && !r.stopping && r.decided == nil && (r.run == nil || r.running) {
		reply.ctr = r
		a.rec = &containerRecord{spec: r.spec, status: messages.StatusStopped}
	}
	ctx.Respond(reply)
}

// adopt takes over a record handed over by the previous revision: a live
// run gets its own exit watch (the previous actor's is stale), and the
// revision learns where the container stands.
func (a *containerActor) adopt(ctx actor.Context) {
	r := a.rec
	if r.run != nil && r.running {
		r.gen++
		a.watch(ctx, r.run)
		a.log.Info("container taken over from the previous revision", "pid", r.run.Pid())
	}
	a.sendStatus(ctx)
}

// detach gives the pool's record away when its setup is over.
func (a *poolActor) detach(ctx actor.Context) {
	reply := &detached{kind: kindPool, name: a.pool.Name}
	if a.rec.ready && !a.rec.settingUp {
		reply.pool = a.rec
		a.rec = &poolRecord{ready: true}
	}
	ctx.Respond(reply)
}

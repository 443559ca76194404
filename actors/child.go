package actors

import (
	"fmt"
	"iter"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/supervision"
)

// kind is what a child of the revision is. Each kind has its own
// bookkeeping (a part of child) and its own supervision rule (a case of
// HandleFailure); a new kind of child (an xconnect link, an ingress
// listener) is one more kind, one more part, and its cases.
type kind uint8

const (
	kindContainer kind = iota + 1
	kindPool
	kindLink
	kindIngress
)

func (k kind) String() string {
	switch k {
	case kindContainer:
		return "container"
	case kindPool:
		return "pool"
	case kindLink:
		return "link"
	case kindIngress:
		return "ingress"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// childKey names a child within its kind: a container and a pool may
// share a name.
type childKey struct {
	kind kind
	name string
}

// child is the revision's one record of one child actor.
type child struct {
	kind kind
	name string
	// pid is nil when the actor could not be spawned or was stopped for
	// good; gone then says why.
	pid  *actor.PID
	gone string
	// The part of the record that belongs to the kind; exactly one is set.
	ctr  *containerChild
	pool *poolChild
	link *linkChild
	ing  *ingressChild
}

// containerChild is what the revision knows of one container: where it
// stands in the group order, its status row, its recovery bookkeeping.
type containerChild struct {
	spec *state.Container
	// view is spec.View(), made once: the spec does not change, and
	// GET /containers would otherwise make it anew for every container at
	// every request. Its slices go out in the replies, shared: they are
	// read-only.
	view  state.ContainerView
	group int
	// row is the container's status as GET /containers shows it.
	row *messages.ContainerStatusChanged
	// asked: the revision asked the container up (StartContainer) and no
	// stop came after.
	asked bool
	// timedOut: the group's timeout passed before the goal was reached.
	timedOut bool
	// decidedSeq is the Seq of the last status the container actor sent
	// before its last failure: a status up to it was overtaken by the
	// failure and is older than the decision already in row.
	decidedSeq uint64
	// settling: row holds a final decision (STOPPED or FAILED) that the
	// container actor has not reported back yet; it may still be
	// releasing the dead run and its mount. A stopping revision waits for
	// its report before it calls the container down: the next revision,
	// or the engine's close, would otherwise meet the release.
	settling bool
	recovery recovery
}

// recovery is the auto-recovery bookkeeping of one container.
type recovery struct {
	policy  supervision.Policy
	history supervision.History
	// suspended: the container actor failed and waits for the revision's
	// restart (after the backoff) or its final decision.
	suspended bool
	// retryGen tags the pending retryDue: a retry whose generation is
	// not the current one was cancelled.
	retryGen    int
	nextRetryAt time.Time
	// pending is a PUT /containers start or restart waiting for its outcome.
	pending *actor.PID
	// pendingAction is the action pending answers for.
	pendingAction string
	// restartAfterStop: an API restart stopped the container and starts it
	// again once it is STOPPED.
	restartAfterStop bool
}

// poolChild is what the revision knows of one IPAM pool.
type poolChild struct {
	spec state.Pool
	// rec outlives the pool actor's incarnations: a restarted pool
	// re-adopts its bridge and keeps its leases.
	rec *poolRecord
	// stopSent: StopPool was sent during shutdown; stopped: PoolStopped
	// came back.
	stopSent, stopped bool
}

// children walks the revision's children of kind k in spawn order (pools
// first, then containers in the state's order).
func (r *revisionActor) children(k kind) iter.Seq[*child] {
	return func(yield func(*child) bool) {
		for _, ch := range r.order {
			if ch.kind == k && !yield(ch) {
				return
			}
		}
	}
}

// container is the container child of that name, or nil.
func (r *revisionActor) container(name string) *child {
	return r.byKey[childKey{kindContainer, name}]
}

// childOf is the child whose actor is pid, or nil.
func (r *revisionActor) childOf(pid *actor.PID) *child {
	for _, ch := range r.order {
		if ch.pid != nil && ch.pid.Equal(pid) {
			return ch
		}
	}
	return nil
}

// add records a child; spawn is its actor's creation, whose failure is
// recorded as the reason the child is gone.
func (r *revisionActor) add(ch *child, spawn func() (*actor.PID, error)) {
	r.order = append(r.order, ch)
	r.byKey[childKey{ch.kind, ch.name}] = ch
	pid, err := spawn()
	if err != nil {
		ch.gone = "spawn: " + err.Error()
		r.log.Error("spawn actor", "kind", ch.kind, ch.kind.String(), ch.name, "err", err)
		return
	}
	ch.pid = pid
}

// cancelRetry ends a container's wait for its backoff retry, if it is
// waiting: the pending retryDue turns stale, and the actor, resumed,
// settles as STOPPED. It reports whether there was a retry to cancel.
func (r *revisionActor) cancelRetry(ctx actor.Context, ch *child, reason string) bool {
	rc := &ch.ctr.recovery
	if !rc.suspended {
		return false
	}
	rc.suspended = false
	rc.retryGen++
	rc.nextRetryAt = time.Time{}
	ctx.(actor.Supervisor).ResumeChildren(ch.pid)
	ctx.Send(ch.pid, &messages.RecoveryDecided{Status: messages.StatusStopped, Reason: reason})
	return true
}

// panicBudget is how many Go panics a minute a child actor may have before
// the revision stops it instead of restarting it.
const panicBudget = 3

// restartAfterPanic restarts a child actor after a Go panic (a bug; its
// record lets the new incarnation re-adopt what the old one ran) while it
// is within panicBudget, and reports whether it did.
func (r *revisionActor) restartAfterPanic(sup actor.Supervisor, ch *child, rs *actor.RestartStatistics, reason any) bool {
	if rs.NumberOfFailures(time.Minute) < panicBudget {
		rs.Fail()
		sup.RestartChildren(ch.pid)
		return true
	}
	r.log.Error(ch.kind.String()+" actor keeps panicking; stopping it", ch.kind.String(), ch.name, "panic", fmt.Sprint(reason))
	sup.StopChildren(ch.pid)
	ch.pid, ch.gone = nil, "actor panicked repeatedly: "+fmt.Sprint(reason)
	return false
}

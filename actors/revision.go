package actors

import (
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/supervision"
)

// revisionActor runs one revision: it spawns one container actor per
// container, starts groups in order (a group when every earlier group reached
// its goals or timed out), supervises the containers (HandleFailure) and stops
// them group by group in reverse order.
type revisionActor struct {
	rev    string
	st     *state.State
	engine Engine
	log    *slog.Logger
	// stopTimeout is the SIGTERM grace given to each container on stop.
	stopTimeout time.Duration

	recs     map[string]*containerRecord
	pids     map[string]*actor.PID
	table    map[string]*messages.ContainerStatusChanged
	groupOf  map[string]int
	asked    map[string]bool
	timedOut map[string]bool
	since    time.Time
	// booted: RevisionBooted was sent (once per revision run).
	booted bool

	stopping  bool
	stopGroup int
	stopFor   *actor.PID

	// self is the revision's PID, for timers that report back.
	self *actor.PID
	// trying says this revision is an update being tried: a container
	// that gives up asks for a rollback instead of FAILED or a reboot.
	trying   bool
	maxDelay time.Duration
	recovery map[string]*recovery

	poolNet PoolNet
	pools   map[string]*actor.PID
	// poolsStopping counts pools asked to stop during shutdown.
	poolsStopping int
	poolsStopped  bool
}

// recovery is the revision's auto-recovery bookkeeping for one container.
type recovery struct {
	policy  supervision.Policy
	history supervision.History
	// suspended: the container actor failed and waits for the revision's
	// restart (after the backoff) or its final decision.
	suspended   bool
	retryGen    int
	nextRetryAt time.Time
	// pending is a PUT /containers start or restart waiting for its outcome.
	pending *actor.PID
	// restartAfterStop: an API restart stopped the container and starts it
	// again once it is STOPPED.
	restartAfterStop bool
}

// retryDue fires when a container's backoff delay is over.
type retryDue struct {
	name string
	gen  int
}

// groupTimedOut fires when a container has not reached its goal within its
// group's timeout.
type groupTimedOut struct{ name string }

func newRevisionProps(cfg Config) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &revisionActor{rev: cfg.Rev, st: cfg.State, engine: cfg.Engine, log: cfg.Log.With("rev", cfg.Rev),
			stopTimeout: cfg.StopTimeout, trying: cfg.Trying, maxDelay: cfg.MaxRecoveryDelay, poolNet: cfg.PoolNet}
	})
}

func (r *revisionActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.start(ctx)
	case *messages.ContainerStatusChanged:
		r.statusChanged(ctx, m)
	case *groupTimedOut:
		if !r.timedOut[m.name] && !r.reached(m.name) {
			r.log.Warn("container did not reach its goal in time", "container", m.name)
			r.timedOut[m.name] = true
			r.evaluate(ctx)
		}
	case *messages.StopRevision:
		r.stopping, r.stopFor = true, ctx.Sender()
		r.stopGroup = len(r.st.Groups) - 1
		r.stopNextGroup(ctx)
	case *messages.GetContainers:
		ctx.Respond(&messages.ContainersReply{Containers: r.containers()})
	case *messages.GetGroups:
		ctx.Respond(&messages.GroupsReply{Groups: r.groups()})
	case *messages.SignalContainer:
		pid, ok := r.pids[m.Name]
		if !ok {
			ctx.Respond(&messages.SignalResult{Err: "Signal not expected from this platform"})
			return
		}
		ctx.Forward(pid)
	case *retryDue:
		r.retry(ctx, m)
	case *messages.PoolStopped:
		if m.Err != "" {
			r.log.Error("pool teardown incomplete", "pool", m.Name, "err", m.Err)
		}
		if r.poolsStopping > 0 {
			r.poolsStopping--
			if r.poolsStopping == 0 {
				r.poolsStopped = true
				r.stopNextGroup(ctx)
			}
		}
	case *messages.ContainerAction:
		r.action(ctx, m)
	case *messages.Describe:
		ctx.Respond(r.describe(ctx))
	}
}

func (r *revisionActor) start(ctx actor.Context) {
	r.since = time.Now()
	r.recs = map[string]*containerRecord{}
	r.pids = map[string]*actor.PID{}
	r.table = map[string]*messages.ContainerStatusChanged{}
	r.groupOf = map[string]int{}
	r.asked = map[string]bool{}
	r.timedOut = map[string]bool{}
	r.recovery = map[string]*recovery{}
	r.self = ctx.Self()
	for _, c := range r.st.Containers {
		r.recovery[c.Name] = &recovery{policy: supervision.PolicyFor(c, r.maxDelay)}
	}
	for i, g := range r.st.Groups {
		for _, c := range r.st.Containers {
			if c.Group == g.Name {
				r.groupOf[c.Name] = i
			}
		}
	}
	r.pools = map[string]*actor.PID{}
	for _, p := range r.st.Pools {
		var peers []string
		for _, q := range r.st.Pools {
			if q.Name != p.Name && q.Type == state.PoolBridge && q.Bridge != "" {
				peers = append(peers, q.Bridge)
			}
		}
		pid, err := ctx.SpawnNamed(newPoolProps(p, peers, r.poolNet, r.log), "pool-"+p.Name)
		if err != nil {
			r.log.Error("spawn pool actor", "pool", p.Name, "err", err)
			continue
		}
		r.pools[p.Name] = pid
	}
	for _, c := range r.st.Containers {
		rec := &containerRecord{spec: c}
		if c.Network != nil && c.Network.Mode == state.NetPool {
			rec.pool = r.pools[c.Network.Pool]
		}
		r.recs[c.Name] = rec
		r.table[c.Name] = &messages.ContainerStatusChanged{Name: c.Name, Status: messages.StatusInstalled}
		pid, err := ctx.SpawnNamed(newContainerProps(rec, r.engine, r.log), c.Name)
		if err != nil {
			r.log.Error("spawn container actor", "container", c.Name, "err", err)
			r.table[c.Name].Status, r.table[c.Name].Err = messages.StatusFailed, err.Error()
			continue
		}
		r.pids[c.Name] = pid
	}
	r.evaluate(ctx)
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
	for _, c := range r.st.Containers {
		switch {
		case r.reached(c.Name):
		case r.timedOut[c.Name] || r.table[c.Name].Status == messages.StatusFailed:
			missed = append(missed, c.Name)
		default:
			return // still on its way
		}
	}
	r.booted = true
	ctx.Send(ctx.Parent(), &messages.RevisionBooted{Rev: r.rev, Took: time.Since(r.since), Missed: missed})
}

func (r *revisionActor) reached(name string) bool {
	c := r.st.Container(name)
	return achieved(r.table[name].Status, c.StatusGoal)
}

func (r *revisionActor) members() []member {
	ms := make([]member, 0, len(r.st.Containers))
	for _, c := range r.st.Containers {
		ms = append(ms, member{group: r.groupOf[c.Name], status: r.table[c.Name].Status, goal: c.StatusGoal, timedOut: r.timedOut[c.Name]})
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
	for gi, g := range r.st.Groups {
		if !groupOpen(gi, ms) {
			break
		}
		for _, c := range r.st.Containers {
			if r.groupOf[c.Name] != gi || r.asked[c.Name] {
				continue
			}
			pid, ok := r.pids[c.Name]
			if !ok {
				continue
			}
			r.asked[c.Name] = true
			ctx.Send(pid, &messages.StartContainer{})
			name, self, sys := c.Name, ctx.Self(), ctx.ActorSystem()
			timeout := time.Duration(g.Timeout) * time.Second
			time.AfterFunc(timeout, func() { sys.Root.Send(self, &groupTimedOut{name: name}) })
		}
	}
	r.checkBooted(ctx)
}

func (r *revisionActor) statusChanged(ctx actor.Context, m *messages.ContainerStatusChanged) {
	if _, ok := r.table[m.Name]; !ok {
		return
	}
	r.table[m.Name] = m
	if r.stopping {
		r.stopNextGroup(ctx)
		return
	}
	rc := r.recovery[m.Name]
	if rc.restartAfterStop && m.Status == messages.StatusStopped {
		rc.restartAfterStop = false
		rc.history = supervision.History{}
		ctx.Send(r.pids[m.Name], &messages.StartContainer{})
	}
	if rc.pending != nil {
		c := r.st.Container(m.Name)
		switch {
		case achieved(m.Status, c.StatusGoal) || m.Status == messages.StatusStarted:
			ctx.Send(rc.pending, &messages.ActionResult{})
			rc.pending = nil
		case m.Status == messages.StatusFailed:
			ctx.Send(rc.pending, &messages.ActionResult{Code: 500, Err: "container failed: " + m.Err})
			rc.pending = nil
		}
	}
	r.evaluate(ctx)
}

// stopNextGroup stops the highest group that still has containers up, and
// moves down once all of them are STOPPED; the last group down answers the
// StopRevision.
func (r *revisionActor) stopNextGroup(ctx actor.Context) {
	for r.stopGroup >= 0 {
		pending := false
		for _, c := range r.st.Containers {
			if r.groupOf[c.Name] != r.stopGroup {
				continue
			}
			switch r.table[c.Name].Status {
			case messages.StatusStopped:
				continue
			case messages.StatusStopping:
				pending = true
				continue
			}
			if r.asked[c.Name] || r.table[c.Name].Status != messages.StatusInstalled {
				pending = true
				r.asked[c.Name] = false
				r.table[c.Name].Status = messages.StatusStopping
				pid, ok := r.pids[c.Name]
				if !ok {
					continue
				}
				if rc := r.recovery[c.Name]; rc != nil && rc.suspended {
					// Waiting for a retry: its mailbox is suspended. Cancel
					// the retry and let it settle before it stops.
					rc.suspended = false
					rc.retryGen++
					rc.nextRetryAt = time.Time{}
					ctx.(actor.Supervisor).ResumeChildren(pid)
					ctx.Send(pid, &messages.RecoveryDecided{Status: messages.StatusStopped, Reason: "revision stopping"})
				}
				ctx.Send(pid, &messages.StopContainer{Timeout: r.stopTimeout})
			}
		}
		if pending {
			return
		}
		r.log.Info("group stopped", "group", r.st.Groups[r.stopGroup].Name)
		r.stopGroup--
	}
	// Containers are down: now the pools remove their bridges and rules.
	if !r.poolsStopped {
		if r.poolsStopping == 0 {
			for _, pid := range r.pools {
				ctx.Request(pid, &messages.StopPool{})
				r.poolsStopping++
			}
		}
		if r.poolsStopping > 0 {
			return
		}
		r.poolsStopped = true
	}
	if r.stopFor != nil {
		ctx.Send(r.stopFor, &messages.RevisionStopped{Rev: r.rev})
		r.stopFor = nil
	}
}

// HandleFailure is the revision's supervision of its container actors. A
// container that exited or could not start is a domain event: the recovery
// policy (package supervision) decides to restart it after a backoff or to
// give up. Anything else is a Go panic (a bug), which gets a small restart
// budget; the restarted actor re-adopts the running container.
func (r *revisionActor) HandleFailure(sys *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	name := r.nameOf(child)
	switch why := reason.(type) {
	case *messages.ContainerExited:
		ran := time.Duration(0)
		if t := r.table[name]; t != nil {
			exit := why.Exit
			t.LastExit, t.Pid = &exit, 0
			if !t.StartedAt.IsZero() {
				ran = why.Exit.At.Sub(t.StartedAt)
			}
		}
		r.recover(sys, sup, child, name, supervision.Exit{Failed: why.Exit.Failed(), Ran: ran}, why.Error())
	case *messages.ContainerStartFailed:
		r.recover(sys, sup, child, name, supervision.Exit{Failed: true}, why.Error())
	default:
		r.log.Error("container actor panicked", "container", name, "panic", fmt.Sprint(reason))
		if rs.NumberOfFailures(time.Minute) < 3 {
			rs.Fail()
			sup.RestartChildren(child)
			return
		}
		r.log.Error("container actor keeps panicking; stopping it", "container", name)
		sup.StopChildren(child)
		if t, ok := r.table[name]; ok {
			t.Status, t.Err = messages.StatusFailed, "actor panicked repeatedly: "+fmt.Sprint(reason)
		}
	}
}

// recover applies the recovery policy to one exit or start failure.
func (r *revisionActor) recover(sys *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, name string, e supervision.Exit, why string) {
	rc := r.recovery[name]
	if rc == nil || r.stopping {
		r.giveUp(sys, sup, child, name, e.Failed, why)
		return
	}
	d := supervision.Decide(rc.policy, rc.history, e)
	rc.history.Retries = d.Retry
	if !d.Restart {
		if rc.policy.Kind != supervision.No {
			why = why + "; " + d.Reason
		}
		r.giveUp(sys, sup, child, name, e.Failed, why)
		return
	}
	rc.suspended = true
	rc.retryGen++
	rc.nextRetryAt = time.Now().Add(d.Delay)
	if t := r.table[name]; t != nil {
		t.Status, t.Pid, t.Err = messages.StatusRecovering, 0, why
	}
	r.log.Info("container will be restarted", "container", name, "retry", d.Retry, "delay", d.Delay, "reason", why)
	if rc.pending != nil {
		sys.Root.Send(rc.pending, &messages.ActionResult{Code: 500, Err: fmt.Sprintf("%s; retry %d in %v", why, d.Retry, d.Delay)})
		rc.pending = nil
	}
	gen, self := rc.retryGen, r.self
	time.AfterFunc(d.Delay, func() { sys.Root.Send(self, &retryDue{name: name, gen: gen}) })
}

// retry restarts a container actor whose backoff is over, unless a stop or
// a newer failure overtook it.
func (r *revisionActor) retry(ctx actor.Context, m *retryDue) {
	rc := r.recovery[m.name]
	if rc == nil || !rc.suspended || rc.retryGen != m.gen || r.stopping {
		return
	}
	rc.suspended = false
	rc.nextRetryAt = time.Time{}
	if sup, ok := ctx.(actor.Supervisor); ok {
		sup.RestartChildren(r.pids[m.name])
	}
}

// giveUp settles a container that will not be restarted: STOPPED after a
// clean exit, FAILED otherwise. A failure while this revision is being
// tried asks root for a rollback; a system container failing outside an
// update asks for a reboot.
func (r *revisionActor) giveUp(sys *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, name string, failed bool, why string) {
	status := messages.StatusStopped
	if failed {
		status = messages.StatusFailed
		r.log.Error("container failed", "container", name, "reason", why)
	} else {
		r.log.Info("container stopped on its own", "container", name)
	}
	if rc := r.recovery[name]; rc != nil {
		rc.suspended = false
	}
	if t := r.table[name]; t != nil {
		// At once, as RECOVERING is: the exit is in the table already,
		// and it must not show beside the status from before it until
		// the container actor reports the decision back.
		t.Status, t.Since, t.Pid, t.Err = status, time.Now(), 0, why
	}
	sup.ResumeChildren(child)
	sys.Root.Send(child, &messages.RecoveryDecided{Status: status, Reason: why})
	if !failed || r.stopping {
		return
	}
	c := r.st.Container(name)
	switch {
	case r.trying:
		r.log.Error("a container could not be started during an update: rollback", "container", name)
		sys.Root.Send(r.parentPID(sys), &messages.RollbackRequested{Rev: r.rev, Reason: "A container could not be started: " + why})
	case c != nil && c.RestartPolicy == state.RestartSystem:
		r.log.Error("system container gave up; reboot required", "container", name, "reason", why)
		sys.Root.Send(r.parentPID(sys), &messages.RebootRequested{Rev: r.rev, Reason: why})
	}
}

// action carries out PUT /containers/{name}.
func (r *revisionActor) action(ctx actor.Context, m *messages.ContainerAction) {
	c := r.st.Container(m.Name)
	pid, ok := r.pids[m.Name]
	if c == nil || !ok {
		ctx.Respond(&messages.ActionResult{Code: 404, Err: "Container not found"})
		return
	}
	if c.RestartPolicy == state.RestartSystem {
		ctx.Respond(&messages.ActionResult{Code: 403, Err: "Container has restart_policy 'system' and cannot be controlled via API"})
		return
	}
	rc := r.recovery[m.Name]
	status := r.table[m.Name].Status
	up := status == messages.StatusStarted || status == messages.StatusReady ||
		(status == messages.StatusMounted && c.StatusGoal == state.GoalMounted)
	transitional := status == messages.StatusStarting || status == messages.StatusStopping
	switch m.Action {
	case "stop":
		ctx.Respond(&messages.ActionResult{})
		if status == messages.StatusStopped || status == messages.StatusStopping {
			return
		}
		rc.restartAfterStop = false
		if rc.suspended {
			// Waiting for a retry: the stop cancels it.
			rc.suspended = false
			rc.retryGen++
			rc.nextRetryAt = time.Time{}
			ctx.(actor.Supervisor).ResumeChildren(pid)
			ctx.Send(pid, &messages.RecoveryDecided{Status: messages.StatusStopped, Reason: "stopped through the API"})
			return
		}
		r.asked[m.Name] = true
		ctx.Send(pid, &messages.StopContainer{Timeout: r.stopTimeout})
	case "start", "restart":
		switch {
		case r.stopping || transitional || status == messages.StatusRecovering:
			ctx.Respond(&messages.ActionResult{Code: 400, Err: "Container state does not allow " + m.Action})
		case up && m.Action == "start":
			ctx.Respond(&messages.ActionResult{})
		case up:
			rc.pending, rc.restartAfterStop = ctx.Sender(), true
			ctx.Send(pid, &messages.StopContainer{Timeout: r.stopTimeout})
		default:
			rc.pending = ctx.Sender()
			rc.history = supervision.History{} // a manual start re-arms recovery afresh
			r.asked[m.Name] = true
			ctx.Send(pid, &messages.StartContainer{})
		}
	default:
		ctx.Respond(&messages.ActionResult{Code: 400, Err: "Invalid action. Use 'start', 'stop', or 'restart'"})
	}
}

func (r *revisionActor) parentPID(sys *actor.ActorSystem) *actor.PID {
	return actor.NewPID(sys.Address(), rootName)
}

func (r *revisionActor) nameOf(child *actor.PID) string {
	for name, pid := range r.pids {
		if pid.Equal(child) {
			return name
		}
	}
	return child.Id
}

func (r *revisionActor) containers() []messages.ContainerInfo {
	out := make([]messages.ContainerInfo, 0, len(r.st.Containers))
	now := time.Now()
	for _, c := range r.st.Containers {
		v := c.View()
		t := r.table[c.Name]
		info := messages.ContainerInfo{
			Name: c.Name, Group: c.Group, Status: r.displayStatus(c.Name), StatusGoal: string(c.StatusGoal),
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
		if rc := r.recovery[c.Name]; rc != nil {
			info.AutoRecovery.CurrentRetries = rc.history.Retries
			if !rc.nextRetryAt.IsZero() {
				next := rc.nextRetryAt
				info.AutoRecovery.NextRetryAt = &next
			}
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
		out = append(out, info)
	}
	return out
}

// displayStatus shows BLOCKED for a container waiting on an earlier group,
// as upstream does.
func (r *revisionActor) displayStatus(name string) messages.Status {
	s := r.table[name].Status
	if s == messages.StatusInstalled && !r.asked[name] && !r.stopping {
		return messages.StatusBlocked
	}
	return s
}

func (r *revisionActor) groups() []messages.GroupInfo {
	ms := r.members()
	for i, c := range r.st.Containers {
		ms[i].status = r.displayStatus(c.Name)
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

func (r *revisionActor) describe(ctx actor.Context) *messages.Node {
	status := "running"
	if r.stopping {
		status = "stopping"
	}
	n := &messages.Node{Path: ctx.Self().Id, Kind: "revision", Status: status, Since: r.since,
		Info: map[string]string{"rev": r.rev, "containers": fmt.Sprint(len(r.st.Containers))}}
	for _, p := range r.st.Pools {
		if pid, ok := r.pools[p.Name]; ok {
			n.ChildIDs = append(n.ChildIDs, pid.Id)
		}
	}
	names := make([]string, 0, len(r.pids))
	for name := range r.pids {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n.ChildIDs = append(n.ChildIDs, r.pids[name].Id)
	}
	return n
}

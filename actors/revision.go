package actors

import (
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
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
	// failures counts actor-level failures (Go panics) per container.
	panics map[string]int
	since  time.Time

	stopping  bool
	stopGroup int
	stopFor   *actor.PID
}

// groupTimedOut fires when a container has not reached its goal within its
// group's timeout.
type groupTimedOut struct{ name string }

func newRevisionProps(rev string, st *state.State, engine Engine, log *slog.Logger, stopTimeout time.Duration) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &revisionActor{rev: rev, st: st, engine: engine, log: log.With("rev", rev), stopTimeout: stopTimeout}
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
	r.panics = map[string]int{}
	for i, g := range r.st.Groups {
		for _, c := range r.st.Containers {
			if c.Group == g.Name {
				r.groupOf[c.Name] = i
			}
		}
	}
	for _, c := range r.st.Containers {
		rec := &containerRecord{spec: c}
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
				if pid, ok := r.pids[c.Name]; ok {
					ctx.Send(pid, &messages.StopContainer{Timeout: r.stopTimeout})
				}
			}
		}
		if pending {
			return
		}
		r.log.Info("group stopped", "group", r.st.Groups[r.stopGroup].Name)
		r.stopGroup--
	}
	if r.stopFor != nil {
		ctx.Send(r.stopFor, &messages.RevisionStopped{Rev: r.rev})
		r.stopFor = nil
	}
}

// HandleFailure is the revision's supervision of its container actors. A
// container that exited or could not start is a domain event decided by the
// recovery policy; anything else is a Go panic (a bug), which gets a small
// restart budget that re-adopts the running container.
func (r *revisionActor) HandleFailure(sys *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	name := r.nameOf(child)
	switch why := reason.(type) {
	case *messages.ContainerExited:
		r.giveUp(sys, sup, child, name, why.Exit.Failed(), why.Error())
	case *messages.ContainerStartFailed:
		r.giveUp(sys, sup, child, name, true, why.Error())
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

// giveUp settles a container that will not be restarted: STOPPED after a
// clean exit, FAILED otherwise; a system container failing outside an update
// asks for a reboot.
func (r *revisionActor) giveUp(sys *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, name string, failed bool, why string) {
	status := messages.StatusStopped
	if failed {
		status = messages.StatusFailed
	}
	if failed {
		r.log.Error("container failed", "container", name, "reason", why)
	} else {
		r.log.Info("container stopped on its own", "container", name)
	}
	sup.ResumeChildren(child)
	sys.Root.Send(child, &messages.RecoveryDecided{Status: status, Reason: why})
	c := r.st.Container(name)
	if c != nil && c.RestartPolicy == state.RestartSystem && !r.stopping {
		r.log.Error("system container gave up; reboot required", "container", name, "reason", why)
		sys.Root.Send(r.parentPID(sys), &messages.RebootRequested{Rev: r.rev, Reason: why})
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

package actors

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/xconnect"
)

// IngressPlane opens the device's ingress listeners (package ingress on a
// device). The ingress actors call it from goroutines.
type IngressPlane interface {
	// Listen binds one listen address and serves its rules: one rule for
	// tcp, one or more prefixes for http. stats has one entry per rule.
	Listen(l IngressListener, stats []*xconnect.Stats) (IngressSetup, error)
}

// IngressListener is one listen address of device.json's ingress and the
// rules it serves, each with the provider's export resolved.
type IngressListener struct {
	Type  string // tcp or http
	Addr  string // IP:PORT
	Rules []IngressRule
	// Local are the bridges of the revision's bridge pools: clients on
	// them are containers of the device, which a kernel path (DNAT) must
	// leave to the listener.
	Local []string
}

// IngressRule is one ingress rule with its backend: the provider's export
// is reached by its unix socket inside the provider, or by port at the
// provider's address.
type IngressRule struct {
	state.IngressRule
	Socket string
	Port   int
	// Bridge is the bridge of the provider's pool, "" when the provider
	// is not on a bridge pool (the device's network namespace, a macvlan
	// pool): only a backend routed through a bridge of the device can be
	// reached by a kernel path.
	Bridge string
}

// IngressSetup is one bound listener.
type IngressSetup interface {
	// Backend points rule i at its provider's current end.
	Backend(i int, ends xconnect.Ends)
	Close() error
	Describe() string
	// Kernel says how clients outside the device reach a tcp rule's
	// backend: by the kernel path, or by the relay alone and why; "" when
	// no kernel path applies (http, a plane without one).
	Kernel() string
	// KernelConnections is how many connections the kernel path took
	// (counted from its DNAT rule every few seconds), which the relay's
	// stats never see.
	KernelConnections() int64
}

// ingressActorName is a listener's actor name under its revision:
// "ingress:" and the listen address.
func ingressActorName(addr string) string { return "ingress:" + addr }

// ingressChild is what the revision knows of one listener: its rules and
// the provider ends it last told the actor, per rule.
type ingressChild struct {
	listener IngressListener
	ends     []xconnect.Ends
	told     bool
	// stopped: the revision is stopping and told it to close.
	stopped bool
	// closed: it answered that it closed (ingressClosed).
	closed bool
}

// ingressActor keeps one ingress listener bound for the life of its
// revision: a listen address that cannot be bound (taken, not on this
// device) is a failure of this listener alone, shown in GET /actors and
// retried with a backoff, while the rest of the revision runs. The
// revision pushes each rule's provider end as it changes; the listener
// follows provider restarts without being re-bound.
type ingressActor struct {
	listener IngressListener
	plane    IngressPlane
	log      *slog.Logger
	stats    []*xconnect.Stats
	// sent: the listeners on their way to the actor, shared by its
	// incarnations (see inflight).
	sent *inflight[IngressSetup]

	ends  []xconnect.Ends
	setup IngressSetup
	busy  bool
	err   string
	retry time.Duration
	since time.Time
	// closed: the revision is stopping; nothing is bound again.
	closed bool
	// notify is told ingressClosed once the listener is closed for good
	// (the revision, waiting to tear its pools down).
	notify *actor.PID
}

type ingressEnds struct{ ends []xconnect.Ends }

type ingressBound struct {
	key   uint64 // in ingressActor.sent
	setup IngressSetup
	err   error
}

type ingressRetry struct{}

// ingressClosed tells the revision that a listener it stopped is closed,
// its kernel path removed: only then may pools go (the forwards' backends
// are on their bridges) and the revision say it stopped (a process that
// exits then leaves no rule behind).
type ingressClosed struct{ addr string }

func newIngressProps(l IngressListener, plane IngressPlane, log *slog.Logger) *actor.Props {
	stats := make([]*xconnect.Stats, len(l.Rules)) // outlive the actor's incarnations
	for i := range stats {
		stats[i] = &xconnect.Stats{}
	}
	sent := &inflight[IngressSetup]{}
	return actor.PropsFromProducer(func() actor.Actor {
		return &ingressActor{listener: l, plane: plane, stats: stats, sent: sent, ends: make([]xconnect.Ends, len(l.Rules)),
			log: log.With("ingress", l.Addr, "type", l.Type)}
	})
}

func (a *ingressActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.since = time.Now()
		a.bind(ctx)
	case *ingressEnds:
		a.ends = m.ends
		if a.setup != nil {
			for i, e := range a.ends {
				a.setup.Backend(i, e)
			}
		}
	case *ingressBound:
		a.bound(ctx, m)
	case *ingressRetry:
		if a.setup == nil && !a.busy && !a.closed {
			a.bind(ctx)
		}
	case *stopIngress:
		a.closed = true
		a.notify = ctx.Parent()
		a.close(ctx)
	case *actor.Restarting:
		a.closed = true
		a.close(ctx)
	case *actor.Stopping:
		a.closed = true
		a.close(ctx)
		// A bind under way comes back to no one: its listener would
		// hold the address until pantavisor ends.
		for _, s := range a.sent.end() {
			go closeIngress(a.log, s)
		}
	case *messages.Describe:
		ctx.Respond(a.describe(ctx))
	}
}

// stopIngress closes the listener ahead of the revision's containers.
type stopIngress struct{}

func (a *ingressActor) bind(ctx actor.Context) {
	a.busy = true
	self, sys, l, log := ctx.Self(), ctx.ActorSystem(), a.listener, a.log
	sent, key := a.sent, a.sent.begin()
	go func() {
		var res ingressBound
		defer sent.done()
		defer func() {
			if p := recover(); p != nil {
				res = ingressBound{key: key, err: fmt.Errorf("panic: %v", p)}
			}
			if !sent.deliver(key, res.setup, res.setup != nil) {
				if res.setup != nil {
					closeIngress(log, res.setup)
				}
				return
			}
			sys.Root.Send(self, &res)
		}()
		s, err := a.plane.Listen(l, a.stats)
		res = ingressBound{key: key, setup: s, err: err}
	}()
}

func (a *ingressActor) bound(ctx actor.Context, m *ingressBound) {
	if !a.sent.received(m.key) {
		return // stopping for good: closed with the others
	}
	a.busy = false
	if a.closed {
		a.setup = m.setup
		a.close(ctx)
		return
	}
	if m.err != nil {
		a.err = m.err.Error()
		a.retry = min(max(2*a.retry, linkRetryMin), linkRetryMax)
		a.log.Error("ingress listener not bound; will retry", "err", m.err, "retry_in", a.retry)
		self, sys := ctx.Self(), ctx.ActorSystem()
		time.AfterFunc(a.retry, func() { sys.Root.Send(self, &ingressRetry{}) })
		return
	}
	a.setup, a.err, a.retry, a.since = m.setup, "", 0, time.Now()
	for i, e := range a.ends {
		a.setup.Backend(i, e)
	}
	a.log.Info("ingress listening", "at", m.setup.Describe())
}

// close closes the listener in the background and then tells notify, if
// set; a bind under way is closed when it comes back (bound).
func (a *ingressActor) close(ctx actor.Context) {
	if a.busy {
		return
	}
	s, notify, addr, sys := a.setup, a.notify, a.listener.Addr, ctx.ActorSystem()
	a.setup, a.notify = nil, nil
	if s == nil && notify == nil {
		return
	}
	go func() {
		if s != nil {
			closeIngress(a.log, s)
		}
		if notify != nil {
			sys.Root.Send(notify, &ingressClosed{addr: addr})
		}
	}()
}

func closeIngress(log *slog.Logger, s IngressSetup) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("closing ingress panicked", "panic", fmt.Sprint(p))
		}
	}()
	if err := s.Close(); err != nil {
		log.Warn("ingress closed with errors", "err", err)
	}
}

func (a *ingressActor) describe(ctx actor.Context) *messages.Node {
	status := "binding"
	switch {
	case a.closed:
		status = "closed"
	case a.setup != nil:
		status = "listening"
	case a.err != "" && !a.busy:
		status = "failed"
	}
	var conns, active, up, down, errs int64
	routes := make([]string, 0, len(a.listener.Rules))
	for i, r := range a.listener.Rules {
		s := a.stats[i].Snapshot()
		conns, active, up, down, errs = conns+s.Connections, active+s.Active, up+s.BytesUp, down+s.BytesDown, errs+s.Errors
		route := r.Provider + "/" + r.Service
		if a.listener.Type == "http" {
			route = r.Prefix + "=" + route
		}
		routes = append(routes, route)
	}
	kernel, kconns := "", int64(0)
	if a.setup != nil {
		kernel, kconns = a.setup.Kernel(), a.setup.KernelConnections()
	}
	info := map[string]string{"type": a.listener.Type, "listen": a.listener.Addr, "routes": strings.Join(routes, ","),
		"connections": strconv.FormatInt(conns+kconns, 10), "active": strconv.FormatInt(active, 10),
		"bytes_in": strconv.FormatInt(up, 10), "bytes_out": strconv.FormatInt(down, 10), "errors": strconv.FormatInt(errs, 10)}
	if kernel != "" {
		info["kernel"] = kernel
		info["kernel_connections"] = strconv.FormatInt(kconns, 10)
	}
	n := &messages.Node{Path: ctx.Self().Id, Kind: "ingress", Status: status, Since: a.since, Info: info, LastFailure: a.err}
	return n
}

// ingressListeners groups the state's ingress rules by listen address, in
// the order they come, with each rule's backend resolved from its
// provider's export.
func ingressListeners(st *state.State) []IngressListener {
	var out []IngressListener
	var local []string
	for _, p := range st.Pools {
		if p.Type == state.PoolBridge && p.Bridge != "" {
			local = append(local, p.Bridge)
		}
	}
	at := map[string]int{}
	for _, r := range st.Ingress {
		if !r.Addr.IsValid() {
			continue
		}
		rule := IngressRule{IngressRule: r}
		if p := st.Container(r.Provider); p != nil {
			for _, e := range p.Exports {
				if e.Name == r.Service {
					rule.Socket, rule.Port = e.Socket, e.Port
					break
				}
			}
			if n := p.Network; n != nil && n.Mode == state.NetPool {
				if pool := st.Pool(n.Pool); pool != nil && pool.Type == state.PoolBridge {
					rule.Bridge = pool.Bridge
				}
			}
		}
		addr := r.Addr.String()
		if i, ok := at[addr]; ok {
			out[i].Rules = append(out[i].Rules, rule)
			continue
		}
		at[addr] = len(out)
		out = append(out, IngressListener{Type: r.Type, Addr: addr, Rules: []IngressRule{rule}, Local: local})
	}
	return out
}

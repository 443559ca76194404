package actors

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/xconnect"
)

// linkActorName is a link's actor name under its revision. Container names
// cannot hold a ':', so "link:<consumer>:<service>" is unique and never
// clashes with a container's or a pool's.
func linkActorName(l xconnect.Link) string { return "link:" + l.Consumer + ":" + l.Name }

// linkChild is what the revision knows of one link: the graph edge and
// the ends it last told the link actor.
type linkChild struct {
	link xconnect.Link
	ends xconnect.Ends
	told bool
}

// linkActor keeps one link of the graph established while both its ends
// run: it exists for the life of its revision, and its link — the consumer
// end and the proxy — exists while both containers run. The revision
// pushes every change of the ends (linkEnds); a consumer restart (a new
// pid, so a new mount namespace) re-injects the consumer end, a provider
// restart only re-points new connections, either end stopping closes the
// link. Establishing runs in a goroutine; a failure is retried with a
// backoff while the ends stay the same.
type linkActor struct {
	link  xconnect.Link
	plane xconnect.Plane
	log   *slog.Logger
	stats *xconnect.Stats
	life  *linkLife

	ends  xconnect.Ends
	setup xconnect.Setup
	busy  bool
	err   string
	retry time.Duration
	since time.Time
	times int
}

type linkEnds struct{ ends xconnect.Ends }

// linkLife is what a link actor's incarnations share, so that no setup an
// establishing makes is lost, whichever incarnation it comes back to.
type linkLife struct {
	// gen tags the establishing under way; a result of another
	// generation is stale and is closed at once. Shared, it only grows: a
	// setup begun before a restart after a panic is stale to the next
	// incarnation, not taken for its own.
	gen int
	// sent: the setups on their way to the actor.
	sent inflight[xconnect.Setup]
}

type linkEstablished struct {
	gen   int
	key   uint64 // in linkLife.sent
	ends  xconnect.Ends
	setup xconnect.Setup
	err   error
}

type linkRetry struct{ gen int }

const (
	linkRetryMin = 500 * time.Millisecond
	linkRetryMax = 30 * time.Second
)

func newLinkProps(l xconnect.Link, plane xconnect.Plane, log *slog.Logger) *actor.Props {
	// Both outlive the actor's incarnations.
	stats, life := &xconnect.Stats{}, &linkLife{}
	return actor.PropsFromProducer(func() actor.Actor {
		return &linkActor{link: l, plane: plane, stats: stats, life: life,
			log: log.With("link", l.Consumer+"/"+l.Name, "type", l.Type, "provider", l.Provider)}
	})
}

func (a *linkActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.since = time.Now()
	case *linkEnds:
		a.endsChanged(ctx, m.ends)
	case *linkEstablished:
		a.onEstablished(ctx, m)
	case *linkRetry:
		if m.gen == a.life.gen && !a.busy && a.setup == nil && a.ends.Up() {
			a.establish(ctx)
		}
	case *actor.Restarting:
		// A restart after a panic starts from nothing: the revision
		// tells the new incarnation the ends again.
		a.life.gen++
		a.close("link actor restarting")
	case *actor.Stopping:
		a.life.gen++
		a.close("link actor stopping")
		for _, s := range a.life.sent.end() {
			go closeSetup(a.log, s, "link actor stopped while it was established")
		}
	case *messages.Describe:
		ctx.Respond(a.describe(ctx))
	case *injectedPanic:
		panic(m.reason) // the package's tests only (see containerActor)
	}
}

func (a *linkActor) endsChanged(ctx actor.Context, e xconnect.Ends) {
	old := a.ends
	a.ends = e
	switch {
	case !e.Up():
		a.life.gen++
		a.err, a.busy = "", false
		a.close("an end stopped")
	case old.Up() && e.ConsumerPid == old.ConsumerPid && (a.setup != nil || a.busy):
		// Only the provider moved: new connections go to it. A setup
		// still being made is pointed at it when it arrives.
		if a.setup != nil {
			a.setup.Provider(e)
		}
	default:
		// A new consumer (or the first time both ends are there): the
		// consumer end is made in its new namespaces.
		a.life.gen++
		a.close("consumer restarted")
		a.retry = 0
		a.establish(ctx)
	}
}

// establish starts making the link for the current ends in the background.
func (a *linkActor) establish(ctx actor.Context) {
	a.busy = true
	gen, ends, self, sys, log := a.life.gen, a.ends, ctx.Self(), ctx.ActorSystem(), a.log
	sent, key := &a.life.sent, a.life.sent.begin()
	go func() {
		var res linkEstablished
		defer sent.done()
		defer func() {
			if p := recover(); p != nil {
				res = linkEstablished{gen: gen, key: key, err: fmt.Errorf("panic: %v", p)}
			}
			if !sent.deliver(key, res.setup, res.setup != nil) {
				if res.setup != nil {
					closeSetup(log, res.setup, "link actor stopped while it was established")
				}
				return
			}
			sys.Root.Send(self, &res)
		}()
		s, err := a.plane.Establish(a.link, ends, a.stats)
		res = linkEstablished{gen: gen, key: key, ends: ends, setup: s, err: err}
	}()
}

func (a *linkActor) onEstablished(ctx actor.Context, m *linkEstablished) {
	if !a.life.sent.received(m.key) {
		return // the actor is stopping for good: closed with the others
	}
	if m.gen != a.life.gen {
		if m.setup != nil {
			closeSetup(a.log, m.setup, "superseded")
		}
		return
	}
	a.busy = false
	if m.err != nil {
		a.err = m.err.Error()
		a.retry = min(max(2*a.retry, linkRetryMin), linkRetryMax)
		a.log.Warn("link not established; will retry", "err", m.err, "retry_in", a.retry)
		gen, self, sys := a.life.gen, ctx.Self(), ctx.ActorSystem()
		time.AfterFunc(a.retry, func() { sys.Root.Send(self, &linkRetry{gen: gen}) })
		return
	}
	a.setup, a.err, a.retry = m.setup, "", 0
	if m.ends != a.ends {
		a.setup.Provider(a.ends)
	}
	a.since = time.Now()
	a.times++
	a.log.Info("link established", "at", m.setup.Describe())
}

// close ends the current link, if any, in the background: removing the
// consumer end enters the consumer's namespaces.
func (a *linkActor) close(why string) {
	if a.setup == nil {
		return
	}
	s := a.setup
	a.setup, a.since = nil, time.Now()
	go closeSetup(a.log, s, why)
}

func closeSetup(log *slog.Logger, s xconnect.Setup, why string) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("closing link panicked", "panic", fmt.Sprint(p))
		}
	}()
	if err := s.Close(); err != nil {
		log.Warn("link closed with errors", "why", why, "err", err)
		return
	}
	log.Info("link closed", "why", why)
}

func (a *linkActor) describe(ctx actor.Context) *messages.Node {
	status := "waiting"
	switch {
	case a.setup != nil:
		status = "established"
	case a.busy:
		status = "establishing"
	case a.err != "":
		status = "failed"
	}
	st := a.stats.Snapshot()
	info := map[string]string{
		"consumer": a.link.Consumer, "provider": a.link.Provider, "service": a.link.Name, "type": a.link.Type,
		"role": a.link.Role, "target": a.link.ConsumerEnd(),
		"connections": strconv.FormatInt(st.Connections, 10), "active": strconv.FormatInt(st.Active, 10),
		"bytes_up": strconv.FormatInt(st.BytesUp, 10), "bytes_down": strconv.FormatInt(st.BytesDown, 10),
		"errors": strconv.FormatInt(st.Errors, 10), "established_times": strconv.Itoa(a.times),
	}
	if a.setup != nil {
		info["at"] = a.setup.Describe()
	}
	n := &messages.Node{Path: ctx.Self().Id, Kind: "link", Status: status, Since: a.since, Info: info}
	if a.err != "" {
		n.LastFailure = a.err
	}
	return n
}

// syncLinks tells each link and ingress actor where its ends are, when
// that changed since it was last told: it runs after every message and
// failure the revision handles, so links and listeners follow their
// containers one step behind at most, without polling. A stopping revision
// tells every link its ends are gone and closes the listeners: they close
// while the containers stop (a consumer end left in a consumer that is
// gone went with its mount namespace).
func (r *revisionActor) syncLinks(sys *actor.ActorSystem) {
	for ch := range r.children(kindLink) {
		if ch.pid == nil {
			continue
		}
		lc := ch.link
		var e xconnect.Ends
		if !r.stopping {
			e = r.providerEnds(lc.link.Provider)
			e.ConsumerPid = 0
			if c := r.container(lc.link.Consumer); c != nil && running(c.ctr.row) {
				e.ConsumerPid = c.ctr.row.Pid
			}
		}
		if lc.told && e == lc.ends {
			continue
		}
		lc.ends, lc.told = e, true
		sys.Root.Send(ch.pid, &linkEnds{ends: e})
	}
	for ch := range r.children(kindIngress) {
		if ch.pid == nil {
			continue
		}
		ic := ch.ing
		if r.stopping {
			if !ic.stopped {
				ic.stopped = true
				sys.Root.Send(ch.pid, &stopIngress{})
			}
			continue
		}
		// Compared in place: this runs after every message, and the
		// ends rarely change.
		same := ic.told && len(ic.ends) == len(ic.listener.Rules)
		for i, rule := range ic.listener.Rules {
			if same && ic.ends[i] != r.providerEnds(rule.Provider) {
				same = false
			}
		}
		if same {
			continue
		}
		ends := make([]xconnect.Ends, len(ic.listener.Rules))
		for i, rule := range ic.listener.Rules {
			ends[i] = r.providerEnds(rule.Provider)
		}
		ic.ends, ic.told = ends, true
		// The actor gets its own copy: messages are values.
		sys.Root.Send(ch.pid, &ingressEnds{ends: slices.Clone(ends)})
	}
}

// providerEnds is where a provider is now: its init's pid while it runs
// (STARTED or READY) and its address. A provider on its way back
// (recovering, restarting, starting) keeps its links: their consumers
// keep their sockets, and connections are refused meanwhile.
func (r *revisionActor) providerEnds(name string) xconnect.Ends {
	var e xconnect.Ends
	p := r.container(name)
	if p == nil {
		return e
	}
	row := p.ctr.row
	switch {
	case running(row):
		e.ProviderPid = row.Pid
		if row.Lease != nil {
			e.ProviderAddr = row.Lease.Addr.Addr()
		}
	case p.ctr.recovery.restartAfterStop || p.ctr.recovery.suspended || p.ctr.recovery.pending != nil:
		e.ProviderRestarting = true
	default:
		switch row.Status {
		case messages.StatusRecovering, messages.StatusStarting, messages.StatusMounted:
			e.ProviderRestarting = true
		}
	}
	return e
}

func running(row *messages.ContainerStatusChanged) bool {
	return row.Pid > 0 && (row.Status == messages.StatusStarted || row.Status == messages.StatusReady)
}

// linkInfos is the graph as GET /xconnect-graph shows it.
func (r *revisionActor) linkInfos() []messages.LinkInfo {
	out := make([]messages.LinkInfo, 0, len(r.graph))
	pid := func(name string) int {
		if c := r.container(name); c != nil && c.ctr.row.Pid > 0 {
			return c.ctr.row.Pid
		}
		return -1
	}
	opt := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	for _, l := range r.graph {
		iface := l.Interface
		if iface == "" {
			iface = l.Type
		}
		out = append(out, messages.LinkInfo{Consumer: l.Consumer, ConsumerPid: pid(l.Consumer),
			Provider: l.Provider, ProviderPid: pid(l.Provider), Name: l.Name, Type: l.Type, Role: l.Role,
			Interface: iface, Target: opt(l.Target), Socket: opt(l.Socket)})
	}
	// Ingress rules, as upstream appends them: the consumer is EXTERNAL,
	// the socket the provider's address and port for an export by port.
	for _, ing := range r.st.Ingress {
		socket := ""
		if p := r.container(ing.Provider); p != nil {
			for _, e := range p.ctr.spec.Exports {
				if e.Name != ing.Service {
					continue
				}
				socket = e.Socket
				if e.Socket == "" && e.Port > 0 && p.ctr.row.Lease != nil {
					socket = netip.AddrPortFrom(p.ctr.row.Lease.Addr.Addr(), uint16(e.Port)).String()
				}
				break
			}
		}
		target := ing.External
		out = append(out, messages.LinkInfo{Consumer: "EXTERNAL", Provider: ing.Provider, ProviderPid: pid(ing.Provider),
			Name: ing.Service, Type: ing.Type, Role: "EXTERNAL", Target: &target, Socket: &socket})
	}
	return out
}

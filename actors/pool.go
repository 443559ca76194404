package actors

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/network/ipam"
	"github.com/pantavisor/pv/state"
)

// PoolNet sets up and removes what a pool needs on the device: its bridge,
// NAT and isolation rules. The pool actor calls it from goroutines.
type PoolNet interface {
	Setup(p state.Pool, peers []string) (PoolSetup, error)
}

// PoolSetup is what one pool set up; Teardown removes exactly that.
type PoolSetup interface {
	Teardown() error
	// Describe names what was set up, for GET /actors.
	Describe() string
}

// poolActorName is a pool's actor name under its revision: "pool:" and the
// pool's name. A container's actor is named as the container, whose name
// cannot hold a ':' (state refuses it), so the two never clash.
func poolActorName(pool string) string { return "pool:" + pool }

// poolRecord is the part of a pool that must outlive the pool actor's
// incarnations: the allocator (sticky leases), what was set up on the
// device, and the lease requests waiting for that setup. A pool actor
// restarted after a Go panic re-adopts them instead of setting the bridge
// up a second time. Only the actor's goroutine touches it, but for sent,
// which the setup's goroutine shares.
type poolRecord struct {
	alloc *ipam.Allocator
	setup PoolSetup
	// settingUp: the setup runs in the background; ready: it reported.
	settingUp, ready bool
	// sent follows the setup under way and its result (see inflight).
	sent          inflight[PoolSetup]
	err           error
	queued        []queuedLease
	since         time.Time
	actorRestarts int
}

// poolActor owns one IPAM pool: the allocator (sticky leases for the life
// of the process, freed addresses reused) and the bridge and rules set up
// for it. Lease requests that arrive before the setup finished wait for it.
type poolActor struct {
	pool  state.Pool
	peers []string
	// members are the revision's containers on the pool, with their
	// static addresses (zero for a dynamic one).
	members map[string]netip.Addr
	// blocked are addresses no dynamic lease may take (poolBlocked).
	blocked map[string]netip.Addr
	net     PoolNet
	log     *slog.Logger
	rec     *poolRecord
	// stopFor is the revision waiting for StopPool.
	stopFor *actor.PID
}

type queuedLease struct {
	from *actor.PID
	req  *messages.LeaseRequest
}

type poolSetupDone struct {
	key   uint64 // in poolRecord.sent
	setup PoolSetup
	err   error
}

type poolTeardownDone struct{ err error }

func newPoolProps(p state.Pool, peers []string, st *state.State, rec *poolRecord, net PoolNet, log *slog.Logger) *actor.Props {
	members, blocked := poolMembers(st, p.Name), poolBlocked(st, p)
	return actor.PropsFromProducer(func() actor.Actor {
		return &poolActor{pool: p, peers: peers, members: members, blocked: blocked, rec: rec, net: net, log: log.With("pool", p.Name)}
	})
}

// poolBlocked are the addresses of pool whose derived MAC (ipam.MAC,
// 02:00 and the address, what a container without a static mac gets) is
// a member's static mac: given to a dynamic member, two interfaces on one
// bridge would have one MAC, and both containers' traffic would break in
// silence. Each is held under the name "mac:" and the container whose mac
// it is (a container's name cannot hold a ':'). Validation refuses a
// static address whose MAC is another member's; a dynamic one is only
// known here.
func poolBlocked(st *state.State, pool state.Pool) map[string]netip.Addr {
	out := map[string]netip.Addr{}
	for _, c := range st.Containers {
		n := c.Network
		if n == nil || n.Mode != state.NetPool || n.Pool != pool.Name || n.MAC == "" {
			continue
		}
		hw, err := net.ParseMAC(n.MAC)
		if err != nil || len(hw) != 6 || hw[0] != 0x02 || hw[1] != 0x00 {
			continue
		}
		if ip := netip.AddrFrom4([4]byte(hw[2:6])); pool.Subnet.Contains(ip) && ip != n.IP {
			out["mac:"+c.Name] = ip
		}
	}
	return out
}

// poolMembers are st's containers on pool, with their static addresses.
func poolMembers(st *state.State, pool string) map[string]netip.Addr {
	m := map[string]netip.Addr{}
	for _, c := range st.Containers {
		if n := c.Network; n != nil && n.Mode == state.NetPool && n.Pool == pool {
			m[c.Name] = n.IP
		}
	}
	return m
}

func (a *poolActor) Receive(ctx actor.Context) {
	r := a.rec
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.start(ctx)
	case *actor.Restarting:
		r.actorRestarts++
	case *poolSetupDone:
		if !r.sent.received(m.key) {
			return // stopping for good: torn down there
		}
		r.setup, r.err, r.ready, r.settingUp = m.setup, m.err, true, false
		if m.err != nil {
			a.log.Error("pool setup failed", "err", m.err)
		} else {
			a.log.Info("pool ready", "setup", m.setup.Describe())
		}
		for _, q := range r.queued {
			ctx.Send(q.from, a.lease(q.req))
		}
		r.queued = nil
		if a.stopFor != nil {
			// StopPool came during the setup: what it made goes now.
			a.teardown(ctx)
		}
	case *messages.LeaseRequest:
		if !r.ready {
			r.queued = append(r.queued, queuedLease{from: ctx.Sender(), req: m})
			return
		}
		ctx.Respond(a.lease(m))
	case *messages.LeaseRelease:
		if r.alloc != nil {
			r.alloc.Release(m.Container)
		}
	case *messages.StopPool:
		a.stopFor = ctx.Sender()
		if r.settingUp {
			// Torn down once the setup reports: answered now, the
			// revision would go on with the bridge and rules made
			// after it, owned by no one.
			return
		}
		a.teardown(ctx)
	case *poolTeardownDone:
		reply := &messages.PoolStopped{Name: a.pool.Name}
		if m.err != nil {
			reply.Err = m.err.Error()
			a.log.Error("pool teardown", "err", m.err)
		}
		if a.stopFor != nil {
			ctx.Send(a.stopFor, reply)
			a.stopFor = nil
		}
	case *actor.Stopping:
		// Last resort when the pool is stopped without StopPool first
		// (the revision gave up on it, or is itself going away). It
		// blocks, but the actor is going away. A setup on its way here
		// is torn down now; one under way tears itself down when it
		// ends, and is waited for: a pool made anew (a revision
		// restarted after a panic) sets up the same bridge and rules.
		setups := r.sent.end()
		if r.settingUp && !r.sent.wait(workWait) {
			a.log.Error("a pool setup still under way on actor stop: it is torn down when it ends", "waited", workWait)
		}
		if r.setup != nil {
			setups = append(setups, r.setup)
			r.setup = nil
		}
		for _, s := range setups {
			if err := s.Teardown(); err != nil {
				a.log.Error("pool teardown on stop", "err", err)
			}
		}
	case *messages.Describe:
		ctx.Respond(a.describe(ctx))
	case *detach:
		a.detach(ctx)
	case *injectedPanic:
		panic(m.reason) // tests only; see containerActor
	}
}

// start runs on every incarnation. The first sets the pool up; a
// restarted one finds the allocator and the setup (done or in flight) in
// the record and carries on with them.
func (a *poolActor) start(ctx actor.Context) {
	r := a.rec
	if r.since.IsZero() {
		r.since = time.Now()
	}
	if r.ready || r.settingUp {
		a.log.Info("pool re-adopted", "ready", r.ready)
		a.settle()
		return
	}
	alloc, err := ipam.New(a.pool.Subnet, a.pool.Gateway)
	if err != nil {
		// Validation refuses such pools; this is a last line of defence.
		r.err, r.ready = fmt.Errorf("pool %s: %w", a.pool.Name, err), true
		return
	}
	r.alloc = alloc
	a.settle()
	if a.net == nil {
		r.ready = true // nothing to set up
		return
	}
	r.settingUp = true
	p, peers, net, self, sys, sent, log := a.pool, a.peers, a.net, ctx.Self(), ctx.ActorSystem(), &r.sent, a.log
	key := sent.begin()
	goSafe(sys, self, func() any { return &poolSetupDone{key: key, err: errPanic} }, func() any {
		defer sent.done()
		s, err := net.Setup(p, peers)
		if !sent.deliver(key, s, s != nil) {
			if s != nil {
				if err := s.Teardown(); err != nil {
					log.Error("teardown of a setup its pool actor left", "err", err)
				}
			}
			return nil
		}
		return &poolSetupDone{key: key, setup: s, err: err}
	})
}

// settle fits the allocator to this revision's members before any of
// their lease requests: it frees the leases of holders that are not on
// the pool (a pool handed over by a non-reboot update keeps its leases,
// sticky for a container's restarts, and one the update removed, or
// moved to another pool, would otherwise hold its address for the life
// of the process: a static address given to a new container then failed
// with "held by"), and reserves each member's static address for it, so
// that no dynamic request, at boot or after an update, takes it first. A
// static address held by another member stays held; that member's own
// request reports the conflict.
func (a *poolActor) settle() {
	al := a.rec.alloc
	if al == nil {
		return
	}
	for _, l := range al.Leases() {
		if _, ok := a.members[l.Owner]; !ok && a.blocked[l.Owner] != l.Addr {
			al.Release(l.Owner)
		}
	}
	for name, ip := range a.members {
		if ip.IsValid() {
			al.Reserve(name, ip)
		}
	}
	for name, ip := range a.blocked {
		al.Reserve(name, ip) // held by a member already: its own request tells
	}
}

// lease allocates or reserves a container's address. A network error is a
// start failure for that container, named clearly.
func (a *poolActor) lease(req *messages.LeaseRequest) *messages.Lease {
	l := &messages.Lease{Pool: a.pool.Name, Type: string(a.pool.Type), Gateway: a.pool.Gateway, MAC: req.MAC}
	l.Link = a.pool.Bridge
	if a.pool.Type == state.PoolMacvlan {
		l.Link = a.pool.Parent
	}
	if a.rec.err != nil {
		l.Err = fmt.Sprintf("pool %s is not available: %v", a.pool.Name, a.rec.err)
		return l
	}
	var addr = req.Static
	var err error
	if req.Static.IsValid() {
		err = a.rec.alloc.Reserve(req.Container, req.Static)
	} else {
		addr, err = a.rec.alloc.Allocate(req.Container)
	}
	if err != nil {
		l.Err = fmt.Sprintf("lease from pool %s: %v", a.pool.Name, err)
		return l
	}
	l.Addr = netipPrefix(addr, a.pool.Subnet.Bits())
	if l.MAC == "" {
		l.MAC = ipam.MAC(addr).String()
	}
	return l
}

func (a *poolActor) teardown(ctx actor.Context) {
	setup, self, sys := a.rec.setup, ctx.Self(), ctx.ActorSystem()
	a.rec.setup = nil
	goSafe(sys, self, func() any { return &poolTeardownDone{err: errPanic} }, func() any {
		if setup == nil {
			return &poolTeardownDone{}
		}
		return &poolTeardownDone{err: setup.Teardown()}
	})
}

func (a *poolActor) describe(ctx actor.Context) *messages.Node {
	r := a.rec
	n := &messages.Node{Path: ctx.Self().Id, Kind: "pool", Status: "ready", Since: r.since, ActorRestarts: r.actorRestarts,
		Info: map[string]string{"type": string(a.pool.Type), "subnet": a.pool.Subnet.String()}}
	switch {
	case !r.ready:
		n.Status = "setting-up"
	case r.err != nil:
		n.Status, n.LastFailure = "failed", r.err.Error()
	}
	if r.alloc != nil {
		n.Info["leases"] = strconv.Itoa(r.alloc.Len()) + "/" + strconv.Itoa(r.alloc.Capacity())
	}
	if r.setup != nil {
		n.Info["setup"] = r.setup.Describe()
	}
	return n
}

func netipPrefix(a netip.Addr, bits int) netip.Prefix { return netip.PrefixFrom(a, bits) }

package xconnect

import (
	"sync/atomic"
	"syscall"
)

// The supervisor's descriptors are shared by every link and ingress
// listener and by all else it does: containers' consoles and inits, the
// control socket, logs, the storage. Each proxy caps its own connections
// (DefaultMaxConns), but on a device the supervisor has the kernel's
// default limit, 4096 descriptors: two links held at their caps by a
// leaking or hostile consumer would take them all. So the descriptors all
// proxies hold together are capped, at a quarter of the limit: whatever
// consumers and clients do, the rest stays the supervisor's. It counts
// descriptors, not connections: a connection holds its two sockets
// (connDescriptors, taken by its Gate), and on top of them what a proxy
// takes with TakeDescriptors (the unix link's pipe and fdinfo per
// direction while it splices; the descriptors of a message it waits to
// pass on, up to 253; an http route's or a rest link's idle backend
// connection, which outlives its client's), eight and more where a
// connection is two.
var connBudget = newBudget(descriptorLimit())

// connDescriptors are what a proxied connection holds at the least: the
// consumer's (client's) socket and the provider's (backend's).
const connDescriptors = 2

// budget counts descriptors against a process-wide maximum.
type budget struct {
	n   atomic.Int64
	max int64
}

func newBudget(descriptors uint64) *budget {
	return &budget{max: int64(max(descriptors/4, minBudget))}
}

// minBudget is what the proxies get however low the limit: enough for a
// device's usual links to be served at all.
const minBudget = 64

// take counts k more descriptors if the budget allows them.
func (b *budget) take(k int64) bool {
	if b.n.Add(k) > b.max {
		b.n.Add(-k)
		return false
	}
	return true
}

// give returns k descriptors taken.
func (b *budget) give(k int64) { b.n.Add(-k) }

// TakeDescriptors counts k descriptors a proxy holds beyond its
// connections' sockets, and reports whether the process-wide budget
// allows them; those taken are given back with GiveDescriptors once
// closed. A proxy refused does without (copies rather than splices) or
// ends the connection that asked for them.
func TakeDescriptors(k int) bool { return connBudget.take(int64(k)) }

// GiveDescriptors returns k descriptors TakeDescriptors allowed.
func GiveDescriptors(k int) { connBudget.give(int64(k)) }

// DescriptorsLeft is how many descriptors the process-wide budget still
// allows, for the tests of what takes them.
func DescriptorsLeft() int { return int(connBudget.max - connBudget.n.Load()) }

// descriptorLimit is the process's limit on open descriptors (the Go
// runtime has already raised the soft limit to the hard one), 4096 when
// it cannot be read: the kernel's default hard limit.
func descriptorLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur == 0 {
		return 4096
	}
	return l.Cur
}

// A Gate admits one proxy's connections: at most its own cap
// (DefaultMaxConns unless SetMax says otherwise), within the process-wide
// budget. Conns keeps one; a proxy with its own accept loop (rest, on
// net/http) keeps its own.
type Gate struct {
	n, max atomic.Int64
}

// SetMax caps the gate at n connections (DefaultMaxConns when n <= 0).
func (g *Gate) SetMax(n int) {
	if n <= 0 {
		n = DefaultMaxConns
	}
	g.max.Store(int64(n))
}

// Max is the gate's own cap.
func (g *Gate) Max() int {
	if m := g.max.Load(); m > 0 {
		return int(m)
	}
	return DefaultMaxConns
}

// Take counts one more connection and reports whether it may be carried:
// under the gate's cap and within the budget. A connection taken is
// given back with Give when it is closed.
func (g *Gate) Take() bool {
	if g.n.Add(1) > int64(g.Max()) {
		g.n.Add(-1)
		return false
	}
	if !connBudget.take(connDescriptors) {
		g.n.Add(-1)
		return false
	}
	return true
}

// Give returns a connection Take allowed.
func (g *Gate) Give() {
	g.n.Add(-1)
	connBudget.give(connDescriptors)
}

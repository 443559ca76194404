package xconnect

import (
	"sync/atomic"
	"syscall"
)

// The supervisor's descriptors are shared by every link and ingress
// listener and by all else it does: containers' consoles and inits, the
// control socket, logs, the storage. Each proxy caps its own connections
// (DefaultMaxConns), but on a device the supervisor has the kernel's
// default limit, 4096 descriptors, and a proxied connection holds two to
// five of them (the consumer's, the provider's, a pipe and an fdinfo
// while it splices): two links held at their caps by a leaking or
// hostile consumer would take them all. So the connections of all
// proxies together are capped too, at a quarter of the limit: whatever
// consumers and clients do, the rest stays the supervisor's.
var connBudget = newBudget(descriptorLimit())

// budget counts connections against a process-wide maximum.
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

// take counts one more connection if the budget allows it.
func (b *budget) take() bool {
	if b.n.Add(1) > b.max {
		b.n.Add(-1)
		return false
	}
	return true
}

// give returns one connection taken.
func (b *budget) give() { b.n.Add(-1) }

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
	if !connBudget.take() {
		g.n.Add(-1)
		return false
	}
	return true
}

// Give returns a connection Take allowed.
func (g *Gate) Give() {
	g.n.Add(-1)
	connBudget.give()
}

package xconnect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync/atomic"
)

// Ends is where a link's two ends are now: each container's init pid (0
// when it is not running) and the provider's address, for exports reached
// by port.
type Ends struct {
	ConsumerPid  int
	ProviderPid  int
	ProviderAddr netip.Addr
	// ProviderRestarting says the provider is not running but on its way
	// back (auto-recovery, an API restart): the link stays, its new
	// connections are refused until the provider runs again.
	ProviderRestarting bool
}

// Up says the link should exist: the consumer runs and the provider runs
// or is restarting.
func (e Ends) Up() bool { return e.ConsumerPid > 0 && (e.ProviderPid > 0 || e.ProviderRestarting) }

// Plane builds the data plane of links: the consumer end inside the
// consumer (a socket, a listener, a device node) and the proxy to the
// provider (package xconnect/mesh). The link actors call it from
// goroutines.
type Plane interface {
	Establish(l Link, ends Ends, st *Stats) (Setup, error)
}

// Setup is one established link.
type Setup interface {
	// Provider points new connections at the provider's current end (a
	// restarted provider has a new pid and, maybe, a new address).
	Provider(ends Ends)
	// Close ends the link: listener and connections closed, the consumer
	// end removed from the consumer if it is still the one this setup
	// made.
	Close() error
	// Describe names the consumer end and the provider end, for
	// GET /actors.
	Describe() string
}

// Dialer opens one connection to the provider's end of a link.
type Dialer func(ctx context.Context) (net.Conn, error)

// Proxy is a plugin's data plane for one link: it accepts consumer
// connections on the listener injected into the consumer and carries each
// to the provider.
type Proxy interface {
	// Serve accepts on ln until Close or until ln fails; it returns nil
	// after Close.
	Serve(ln net.Listener) error
	// Close stops accepting and ends every connection under way.
	Close() error
}

// Config is what every plugin is built from.
type Config struct {
	Link  Link
	Dial  Dialer
	Stats *Stats
	Log   *slog.Logger
	// DialAs connects to the provider's socket with the credentials of
	// uid and gid (DialAs in ns_linux.go), for providers that take the
	// caller's identity from the socket (dbus); nil where not available.
	DialAs func(ctx context.Context, uid, gid int) (net.Conn, error)
	// ReadProviderFile reads a file inside the provider (its
	// /etc/passwd), bounded; nil where not available.
	ReadProviderFile func(path string) ([]byte, error)
}

// Stats are a link's traffic counters, shared by its proxy (which counts)
// and its actor (which reports them in GET /actors and /metrics).
type Stats struct {
	// Connections accepted in all, and open now.
	Connections atomic.Int64
	Active      atomic.Int64
	// BytesUp went consumer → provider, BytesDown provider → consumer.
	BytesUp   atomic.Int64
	BytesDown atomic.Int64
	// Errors counts connections that could not reach the provider or
	// ended with an error other than a close.
	Errors atomic.Int64
}

// StatsSnapshot is Stats read at one instant.
type StatsSnapshot struct {
	Connections, Active, BytesUp, BytesDown, Errors int64
}

// Snapshot reads the counters.
func (s *Stats) Snapshot() StatsSnapshot {
	return StatsSnapshot{Connections: s.Connections.Load(), Active: s.Active.Load(),
		BytesUp: s.BytesUp.Load(), BytesDown: s.BytesDown.Load(), Errors: s.Errors.Load()}
}

// halfCloser is a connection that can end its write side alone.
type halfCloser interface{ CloseWrite() error }

// Relay copies both ways between the consumer's connection c and the
// provider's p until both sides have ended, passing each end of stream on
// as a half-close, and counts the bytes. It closes both connections before
// it returns. A relay between two TCP connections, or from a unix socket
// to TCP, is spliced by the kernel (io.Copy uses the connections'
// ReadFrom/WriteTo).
func Relay(c, p net.Conn, st *Stats) error {
	err1, err2 := BothWays(c, p,
		func() error { return pipe(p, c, &st.BytesUp) },
		func() error { return pipe(c, p, &st.BytesDown) })
	return errors.Join(quiet(err1), quiet(err2))
}

// BothWays runs the two directions of a connection pair, up and down,
// each of which passes its end of stream on as a half-close and returns
// nil only for that, and closes c and p when both are over, or at once
// when the first to end returns an error: a reset or a failure, not an
// end of stream, after which the other direction's peer may keep its
// side open for ever. It returns both directions' errors, the first to
// end first.
func BothWays(c, p net.Conn, up, down func() error) (first, second error) {
	errc := make(chan error, 2)
	go func() { errc <- Recovered(up) }()
	go func() { errc <- Recovered(down) }()
	first = <-errc
	if first != nil {
		c.Close()
		p.Close()
	}
	second = <-errc
	c.Close()
	p.Close()
	return first, second
}

// Recovered runs f and returns its error, or a panic's as an error (its
// stack logged): the directions of a connection run in goroutines of
// their own, outside the recover of Conns' handlers, and a panic there,
// a bug met by some peer's bytes, would end the supervisor. The ingress
// kernel path's iptables calls, in a goroutine of their own too, go
// through it as well: a panic is that install's or removal's failure.
func Recovered(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			slog.Error("recovered from a panic", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

// pipe copies src to dst, then half-closes dst (or closes it, when it
// cannot half-close, which also ends the other direction).
func pipe(dst, src net.Conn, n *atomic.Int64) error {
	_, err := io.Copy(counter{dst, n}, src)
	if hc, ok := dst.(halfCloser); ok {
		hc.CloseWrite()
	} else {
		dst.Close()
	}
	return err
}

// counter counts what is written through it, as it goes, so that a
// long-lived connection shows its traffic. It hides the connection's
// ReadFrom, so the copy is not spliced.
type counter struct {
	net.Conn
	n *atomic.Int64
}

func (c counter) Write(b []byte) (int, error) {
	k, err := c.Conn.Write(b)
	c.n.Add(int64(k))
	return k, err
}

// quiet drops the errors a relay ends with in normal operation: the other
// side closed.
func quiet(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

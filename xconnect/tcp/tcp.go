// Package tcp is the byte relay of tcp links and of tcp ingress rules:
// each accepted connection gets its own connection to the backend, bytes
// flow both ways (spliced by the kernel between two TCP sockets), an end
// of stream is passed on as a half-close, idle connections are ended, and
// past a cap new connections are refused at once.
package tcp

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/xconnect"
)

// Options tune a relay; zero values take the defaults.
type Options struct {
	// IdleTimeout ends a connection with no traffic either way for that
	// long (default 1 h).
	IdleTimeout time.Duration
	// MaxConns caps the connections carried at once (default
	// xconnect.DefaultMaxConns); one more is closed on arrival and
	// counted as an error.
	MaxConns int
}

// Proxy is one relay.
type Proxy struct {
	*xconnect.Conns
	cfg xconnect.Config
	opt Options
}

// New makes a relay to cfg.Dial's backend.
func New(cfg xconnect.Config) xconnect.Proxy { return NewWith(cfg, Options{}) }

// NewWith makes a relay with options.
func NewWith(cfg xconnect.Config, opt Options) *Proxy {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Stats == nil {
		cfg.Stats = &xconnect.Stats{}
	}
	if opt.IdleTimeout <= 0 {
		opt.IdleTimeout = time.Hour
	}
	p := &Proxy{Conns: xconnect.NewConns(cfg.Log), cfg: cfg, opt: opt}
	st := cfg.Stats
	p.SetMax(opt.MaxConns, func() { st.Errors.Add(1) })
	return p
}

// Serve accepts on ln until Close.
func (p *Proxy) Serve(ln net.Listener) error { return p.Conns.Serve(ln, p.handle) }

func (p *Proxy) handle(c net.Conn) {
	st := p.cfg.Stats
	st.Connections.Add(1)
	st.Active.Add(1)
	defer st.Active.Add(-1)
	b, err := p.cfg.Dial(p.Context())
	if err != nil {
		st.Errors.Add(1)
		p.cfg.Log.Debug("relay: backend not reachable", "err", err)
		return
	}
	if !p.Track(b) {
		b.Close()
		return
	}
	defer p.Untrack(b)
	if err := relay(c, b, st, p.opt.IdleTimeout); err != nil {
		st.Errors.Add(1)
	}
}

// relay copies both ways until both directions ended, then closes both.
// Each direction is spliced by the kernel (TCP to TCP by our own splice
// loop, unix to TCP by io.Copy's); the byte counters are updated when a
// direction ends. Idleness is read from the kernel's own counters of the
// client connection (TCP_INFO), which see every byte either way without
// anything in the data path.
func relay(c, b net.Conn, st *xconnect.Stats, idle time.Duration) error {
	done := make(chan struct{})
	errc := make(chan error, 2)
	// Each in a goroutine of its own, outside the handler's recover: a
	// panic is that connection's error, never the supervisor's end.
	go func() { errc <- xconnect.Recovered(func() error { return copyHalf(b, c, &st.BytesUp) }) }()
	go func() { errc <- xconnect.Recovered(func() error { return copyHalf(c, b, &st.BytesDown) }) }()
	if tc, ok := c.(*net.TCPConn); ok {
		go xconnect.Recovered(func() error {
			watchIdle(tc, idle, done, func() { c.Close(); b.Close() })
			return nil
		})
	}
	e1 := <-errc
	if e1 != nil {
		// Not an end of stream but a reset or a failure: the other
		// direction cannot go on (its peer may keep its side open for
		// ever), so both connections end now.
		c.Close()
		b.Close()
	}
	e2 := <-errc
	close(done)
	c.Close()
	b.Close()
	return errors.Join(quiet(e1), quiet(e2))
}

// watchIdle calls end once c has moved no byte either way for idle.
func watchIdle(c *net.TCPConn, idle time.Duration, done <-chan struct{}, end func()) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	moved := func() (sum uint64) {
		raw.Control(func(fd uintptr) {
			if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				sum = ti.Bytes_received + ti.Bytes_acked
			}
		})
		return sum
	}
	t := time.NewTicker(min(idle/2, 10*time.Second))
	defer t.Stop()
	last, since := moved(), time.Now()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if m := moved(); m != last {
				last, since = m, time.Now()
			} else if time.Since(since) >= idle {
				end()
				return
			}
		}
	}
}

// copyHalf copies src to dst, then half-closes dst (or closes it, when it
// cannot half-close, which also ends the other direction).
func copyHalf(dst, src net.Conn, n *atomic.Int64) error {
	w, err := pump(dst, src)
	n.Add(w)
	if hc, ok := dst.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()
	} else {
		dst.Close()
	}
	return err
}

// pump copies src to dst, spliced by the kernel between sockets, holding
// a pipe only while bytes flow: io.Copy's splice holds its pipe (two
// descriptors) for the whole life of a direction, so an idle connection
// would cost six descriptors, and 10 000 idle ones more than a device's
// descriptor limit; this way it costs its two sockets. Between two TCP
// sockets it is splicePump; otherwise it waits for src to have bytes
// holding nothing, then copies exactly what is queued with io.CopyN, one
// burst at a time. A splicePump refused a pipe by the descriptor budget
// goes on that way, through a buffer (Go's own splice would take a pipe
// the budget does not see): it held no byte when it was refused.
func pump(dst, src net.Conn) (int64, error) {
	var total int64
	var out io.Writer = dst
	if d, s, ok := tcpRaw(dst, src); ok {
		n, err := splicePump(d, s)
		if !errors.Is(err, errNoPipe) {
			return n, err
		}
		total, out = n, writerOnly{dst}
	}
	sc, ok := src.(syscall.Conn)
	if !ok {
		n, err := io.Copy(out, src)
		return total + n, err
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		n, err := io.Copy(out, src)
		return total + n, err
	}
	var mark *urgentStep // made at the first urgent data only: it holds a buffer
	// The burst's results, declared once: the callback shares them, and
	// per burst each would be an allocation.
	var queued int
	var eof, atMark bool
	var rerr error
	for {
		queued, eof, atMark, rerr = 0, false, false, nil
		err := rc.Read(func(fd uintptr) bool {
			q, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
			if err == nil && q > 0 {
				queued = q
				return true
			}
			if urgentMark(int(fd)) {
				// SIOCINQ counts only the bytes before urgent
				// data: step over it (see urgentStep; a unix
				// backend has no out of band to pass it on to).
				atMark = true
				if mark == nil {
					mark = new(urgentStep)
				}
				mark.read(int(fd))
				return true
			}
			// Nothing queued: the end of the stream, an error, or
			// nothing yet (then wait for readability).
			var b [1]byte
			k, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			switch {
			case errors.Is(err, unix.EAGAIN):
				return false
			case err != nil:
				rerr = err
			case k == 0:
				eof = true
			} // k > 0: bytes came in meanwhile; SIOCINQ again
			return true
		})
		switch {
		case err != nil:
			return total, err
		case rerr != nil:
			return total, rerr
		case eof:
			return total, nil
		case atMark:
			w, err := out.Write(mark.buf[:mark.n])
			total += int64(w)
			if err == nil {
				err = mark.err
			}
			if err != nil || mark.eof {
				return total, err
			}
			continue
		case queued == 0:
			continue
		}
		w, err := io.CopyN(out, src, int64(queued))
		total += w
		if err != nil {
			if errors.Is(err, io.EOF) {
				return total, nil
			}
			return total, err
		}
	}
}

// writerOnly hides dst's ReadFrom, so that io.CopyN copies through a
// buffer.
type writerOnly struct{ io.Writer }

func quiet(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return nil
	}
	if errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) {
		return nil
	}
	return err
}

// Package unix is the xconnect plugin for unix stream sockets: each
// consumer connection gets its own connection to the provider's socket,
// bytes flow both ways, an end of stream is passed on as a half-close, and
// file descriptors (SCM_RIGHTS) are carried with the bytes they were sent
// with, both ways.
package unix

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/throttle"
	"github.com/pantavisor/pv/xconnect"
)

// bufSize is the data read at once per direction, oobSize room for the
// largest SCM_RIGHTS message the kernel passes (SCM_MAX_FD descriptors).
var (
	bufSize = 32 << 10
	oobSize = unix.CmsgSpace(253 * 4)
)

// Proxy carries one link's consumer connections to its provider.
type Proxy struct {
	*xconnect.Conns
	cfg     xconnect.Config
	connect Connect
	// failLog keeps the log of failed dials to a line per 10 s: a
	// consumer retrying in a loop must not flood the log.
	failLog *throttle.Throttle
}

// Connect makes the provider's end of one consumer connection c: a
// plugin on top of this one (dbus) dials its own way and speaks to both
// ends before the bytes flow. Nothing may be left unread in c's buffers:
// what was read from c must have been sent on.
type Connect func(ctx context.Context, c *net.UnixConn) (*net.UnixConn, error)

// New makes the proxy of cfg.Link.
func New(cfg xconnect.Config) xconnect.Proxy { return NewWith(cfg, nil) }

// NewWith makes a proxy whose provider connections connect makes (nil:
// cfg.Dial, nothing said first).
func NewWith(cfg xconnect.Config, connect Connect) xconnect.Proxy {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Stats == nil {
		cfg.Stats = &xconnect.Stats{}
	}
	p := &Proxy{Conns: xconnect.NewConns(cfg.Log), cfg: cfg, connect: connect,
		failLog: throttle.Every(10 * time.Second)}
	// Beyond the cap a connection is closed on arrival, an error.
	st := cfg.Stats
	p.SetMax(0, func() { st.Errors.Add(1) })
	return p
}

// Serve accepts consumer connections on ln until Close.
func (p *Proxy) Serve(ln net.Listener) error { return p.Conns.Serve(ln, p.handle) }

func (p *Proxy) handle(c net.Conn) {
	st := p.cfg.Stats
	st.Connections.Add(1)
	st.Active.Add(1)
	defer st.Active.Add(-1)
	var b net.Conn
	var err error
	if cu, ok := c.(*net.UnixConn); ok && p.connect != nil {
		var bu *net.UnixConn
		if bu, err = p.connect(p.Context(), cu); err == nil {
			b = bu
		}
	} else {
		b, err = p.cfg.Dial(p.Context())
	}
	if err != nil {
		st.Errors.Add(1)
		if _, ok := p.failLog.Event(); ok {
			p.cfg.Log.Warn("link: provider not reachable", "err", err)
		}
		c.Close()
		return
	}
	if !p.Track(b) {
		b.Close()
		return
	}
	defer p.Untrack(b)
	cu, ok1 := c.(*net.UnixConn)
	bu, ok2 := b.(*net.UnixConn)
	if !ok1 || !ok2 {
		// Not a unix pair (a test's pipe, say): bytes only.
		if err := xconnect.Relay(c, b, st); err != nil {
			st.Errors.Add(1)
		}
		return
	}
	e1, e2 := xconnect.BothWays(c, b,
		func() error { return Pump(bu, cu, &st.BytesUp) },
		func() error { return Pump(cu, bu, &st.BytesDown) })
	if quiet(e1) != nil || quiet(e2) != nil {
		st.Errors.Add(1)
	}
}

// rights lists the descriptors of the SCM_RIGHTS messages in oob.
func rights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if f, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, f...)
		}
	}
	return fds
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// quiet drops the errors of a connection the other side closed or reset,
// or that the link closed: they end a pump, but are no failure.
func quiet(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
		return nil
	}
	return err
}

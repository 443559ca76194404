// Package tcp is the byte relay of tcp links and of tcp ingress rules:
// each accepted connection gets its own connection to the backend, bytes
// flow both ways (spliced by the kernel between two TCP sockets), an end
// of stream is passed on as a half-close, idle connections are ended, and
// past a cap new connections are refused at once.
package tcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/xconnect"
)

// Options tune a relay; zero values take the defaults.
type Options struct {
	// IdleTimeout ends a connection with no traffic either way for that
	// long (default 1 h).
	IdleTimeout time.Duration
	// MaxConns caps the connections carried at once (default 1024); one
	// more is closed on arrival and counted as an error.
	MaxConns int
}

// Proxy is one relay.
type Proxy struct {
	cfg   xconnect.Config
	opt   Options
	ctx   context.Context
	stop  context.CancelFunc
	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	n     atomic.Int64
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
	if opt.MaxConns <= 0 {
		opt.MaxConns = 1024
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Proxy{cfg: cfg, opt: opt, ctx: ctx, stop: stop, conns: map[net.Conn]struct{}{}}
}

// Serve accepts on ln until Close.
func (p *Proxy) Serve(ln net.Listener) error {
	p.mu.Lock()
	closed := p.ctx.Err() != nil
	p.ln = ln
	p.mu.Unlock()
	if closed {
		// Closed before serving: Close could not end this listener.
		ln.Close()
		return nil
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			p.cfg.Log.Warn("relay accept", "err", err)
			select {
			case <-p.ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if p.n.Add(1) > int64(p.opt.MaxConns) {
			p.n.Add(-1)
			p.cfg.Stats.Errors.Add(1)
			c.Close()
			continue
		}
		if !p.admit(c) {
			p.n.Add(-1)
			c.Close()
			return nil
		}
		go p.handle(c)
	}
}

// admit tracks a consumer's connection and counts its goroutine in wg,
// both under mu: Close, which holds mu while it cancels, then waits on wg,
// either sees the goroutine counted or keeps it from starting (a wg.Add
// racing Close's Wait would let Close return with it still running).
func (p *Proxy) admit(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return false
	}
	p.conns[c] = struct{}{}
	p.wg.Add(1)
	return true
}

func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !add {
		delete(p.conns, c)
		return true
	}
	if p.ctx.Err() != nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) handle(c net.Conn) {
	st := p.cfg.Stats
	defer p.wg.Done()
	defer p.n.Add(-1)
	defer p.track(c, false)
	defer func() {
		if r := recover(); r != nil {
			p.cfg.Log.Error("relay connection panicked", "panic", fmt.Sprint(r))
		}
		c.Close()
	}()
	st.Connections.Add(1)
	st.Active.Add(1)
	defer st.Active.Add(-1)
	b, err := p.cfg.Dial(p.ctx)
	if err != nil {
		st.Errors.Add(1)
		p.cfg.Log.Debug("relay: backend not reachable", "err", err)
		return
	}
	if !p.track(b, true) {
		b.Close()
		return
	}
	defer p.track(b, false)
	if err := relay(c, b, st, p.opt.IdleTimeout); err != nil {
		st.Errors.Add(1)
	}
}

// relay copies both ways until both directions ended, then closes both.
// Each direction is an io.Copy between the connections themselves, so
// TCP to TCP (and unix to TCP) is spliced by the kernel; the byte counters
// are updated when a direction ends. Idleness is read from the kernel's
// own counters of the client connection (TCP_INFO), which see every byte
// either way without anything in the data path.
func relay(c, b net.Conn, st *xconnect.Stats, idle time.Duration) error {
	done := make(chan struct{})
	errc := make(chan error, 2)
	go func() { errc <- copyHalf(b, c, &st.BytesUp) }()
	go func() { errc <- copyHalf(c, b, &st.BytesDown) }()
	if tc, ok := c.(*net.TCPConn); ok {
		go watchIdle(tc, idle, done, func() { c.Close(); b.Close() })
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
	w, err := io.Copy(dst, src)
	n.Add(w)
	if hc, ok := dst.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()
	} else {
		dst.Close()
	}
	return err
}

func quiet(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return nil
	}
	if errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) {
		return nil
	}
	return err
}

// Close stops accepting and ends every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.stop()
	var err error
	if p.ln != nil {
		if cerr := p.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// Package rest is the xconnect plugin for a provider's HTTP API on a unix
// socket: an HTTP/1.1 reverse proxy that tells the provider who is asking.
// Every request, each one of a keep-alive connection, reaches the provider
// with X-PV-Client (the consumer container) and X-PV-Role (the link's
// role) set by pantavisor; whatever the consumer sent under those names is
// replaced. Bodies stream both ways; connections to the provider are kept
// alive and reused.
package rest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"

	"github.com/pantavisor/pv/internal/acceptretry"
	"github.com/pantavisor/pv/xconnect"
	xhttp "github.com/pantavisor/pv/xconnect/http"
)

// The identity headers.
const (
	HeaderClient = "X-PV-Client"
	HeaderRole   = "X-PV-Role"
)

// Proxy is one rest link's HTTP proxy.
type Proxy struct {
	cfg xconnect.Config
	srv *http.Server
	// tr keeps the connections to the provider alive. An idle one
	// outlives the consumer connection whose Gate counted it: it holds
	// a descriptor of the process-wide budget of its own, and is closed
	// rather than kept when the budget has none.
	tr   *xhttp.Transport
	once sync.Once
	// stop cancels the context every request is made under: it ends the
	// connections the server no longer tracks, those switched to another
	// protocol (a WebSocket, say), whose tunnel the reverse proxy closes
	// when the request's context is done.
	stop context.CancelFunc
	// upgraded are the consumer connections switched to another
	// protocol, which Close also closes itself: the proxy's own closing
	// of their tunnels on stop runs in a goroutine of its own, and a
	// byte sent just after Close returned could still be relayed.
	mu       sync.Mutex
	upgraded map[net.Conn]bool
	closed   bool
	// gate admits the consumer connections held, upgraded ones
	// included (xconnect.DefaultMaxConns, within the budget).
	gate xconnect.Gate
}

// New makes the proxy of cfg.Link.
func New(cfg xconnect.Config) xconnect.Proxy {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Stats == nil {
		cfg.Stats = &xconnect.Stats{}
	}
	p := &Proxy{cfg: cfg}
	// The http proxy's transport, not net/http's: net/http's Transport
	// returns a connection to its pool before it tells, and keeps there
	// the connections dialed for requests that went on another, so its
	// idle connections could not be counted in the budget. Its answer
	// heads are bounded at 1 MiB (net/http's default, 10 MiB per head,
	// held for each of the link's connections at once, was gigabytes of
	// the supervisor's memory at a provider's will).
	p.tr = xhttp.NewTransport(cfg.Dial, xhttp.TransportOptions{
		HeaderTimeout: 5 * time.Minute,
		MaxIdle:       16, IdleTimeout: 90 * time.Second,
	})
	client, role := cfg.Link.Consumer, cfg.Link.Role
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = "http", "localhost"
			r.Out.Host = r.In.Host
			// Set, not added: the consumer's own values go.
			r.Out.Header.Set(HeaderClient, client)
			r.Out.Header.Set(HeaderRole, role)
		},
		Transport:     p.tr,
		FlushInterval: -1, // stream: server-sent events, long polls
		ErrorLog:      slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			cfg.Stats.Errors.Add(1)
			if errors.Is(err, context.Canceled) {
				return // the consumer went away
			}
			cfg.Log.Warn("rest link: provider failed", "err", err)
			http.Error(w, "provider "+cfg.Link.Provider+" unavailable", http.StatusBadGateway)
		},
	}
	base, stop := context.WithCancel(context.Background())
	p.stop = stop
	p.srv = &http.Server{
		BaseContext:       func(net.Listener) context.Context { return base },
		Handler:           rp,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		// net/http's default, 1 MiB per head, held by each of the
		// link's connections at once while a consumer sends its heads
		// slowly, was a gigabyte of the supervisor's memory.
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn),
		ConnState: func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				cfg.Stats.Connections.Add(1)
				cfg.Stats.Active.Add(1)
			case http.StateClosed:
				cfg.Stats.Active.Add(-1)
			case http.StateHijacked:
				cfg.Stats.Active.Add(-1)
				p.track(c)
			}
		},
	}
	return p
}

// Serve serves the consumer's requests on ln until Close. An accept that
// fails (the kernel short of memory or socket buffers) is tried again
// after a pause, however it failed: a proxy that returned would leave
// the link established and serving nothing.
func (p *Proxy) Serve(ln net.Listener) error {
	err := p.srv.Serve(countingListener{Listener: acceptretry.Listener(ln), st: p.cfg.Stats, gate: &p.gate})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close ends the server, its connections (upgraded ones included: a link
// removed, or given another role, must not go on carrying the consumer's
// traffic under the identity it had) and the idle ones to the provider.
func (p *Proxy) Close() error {
	var err error
	p.once.Do(func() {
		err = p.srv.Close()
		p.stop()
		p.tr.Close()
		p.mu.Lock()
		p.closed = true
		upgraded := p.upgraded
		p.upgraded = nil
		p.mu.Unlock()
		for c := range upgraded { // unlocked: Close calls onClose, which locks
			c.Close()
		}
	})
	return err
}

// track keeps an upgraded consumer connection for Close (closed at once
// when Close came first); it leaves when it is closed.
func (p *Proxy) track(c net.Conn) {
	cc, ok := c.(*countingConn)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close() // onClose is not set yet: no lock taken again
		return
	}
	if p.upgraded == nil {
		p.upgraded = map[net.Conn]bool{}
	}
	p.upgraded[c] = true
	cc.onClose = func() {
		p.mu.Lock()
		delete(p.upgraded, c)
		p.mu.Unlock()
	}
}

// countingListener counts the bytes of every consumer connection: read is
// up (consumer → provider), written down. It holds at most
// xconnect.DefaultMaxConns at once, within the process-wide budget, as
// the other links do: one more is closed on arrival and counted as an
// error, so that a consumer opening connections without end cannot take
// the supervisor's descriptors.
type countingListener struct {
	net.Listener
	st   *xconnect.Stats
	gate *xconnect.Gate
}

func (l countingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.gate.Take() {
			l.st.Errors.Add(1) // before the close, which the peer sees
			c.Close()
			continue
		}
		return &countingConn{Conn: c, st: l.st, gate: l.gate}, nil
	}
}

type countingConn struct {
	net.Conn
	st   *xconnect.Stats
	gate *xconnect.Gate
	// onClose, set once the connection is upgraded (before the proxy
	// uses it), drops it from the proxy's upgraded set.
	onClose   func()
	closeOnce sync.Once
}

func (c *countingConn) Close() error {
	c.closeOnce.Do(func() {
		c.gate.Give()
		if c.onClose != nil {
			c.onClose()
		}
	})
	return c.Conn.Close()
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.st.BytesUp.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.st.BytesDown.Add(int64(n))
	return n, err
}

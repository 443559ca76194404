// Package http is the HTTP reverse proxy of http links and of http
// ingress rules: one server per listen address, routes by longest path
// prefix (on segment boundaries: "/api" takes "/api" and "/api/x", never
// "/apix"), the prefix stripped; the backend's status, headers and body
// come back as they are, streamed both ways; X-Forwarded-For, -Proto and
// -Host are set; connections to each backend are kept alive; a backend
// that is down is a 502, one that does not answer in time a 504; a
// WebSocket upgrade passes through. Routes of an xconnect link also carry
// the consumer's identity (X-PV-Client, X-PV-Role), replacing any the
// client sent.
package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	nethttp "net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/xconnect"
)

// Route sends the requests under Prefix to a backend.
type Route struct {
	Prefix string
	Dial   xconnect.Dialer
	Stats  *xconnect.Stats
	// Client and Role, when Client is set, go to the backend as
	// X-PV-Client and X-PV-Role on every request.
	Client, Role string
}

// Options tune a server; zero values take the defaults.
type Options struct {
	// ReadHeaderTimeout bounds a client's request head (default 10 s);
	// IdleTimeout its keep-alive silence (default 2 min).
	ReadHeaderTimeout, IdleTimeout time.Duration
	// BackendTimeout is how long a backend may take to answer a request's
	// head (default 60 s): past it, 504.
	BackendTimeout time.Duration
	// SendTimeout is how long writing an answer may wait for the client
	// to take any of it (default 60 s, as nginx's send_timeout): past it
	// the connection ends, so that a client that does not read holds
	// neither a goroutine nor a backend connection for ever.
	SendTimeout time.Duration
	Log         *slog.Logger
}

// Server is one listen address's proxy. Its connections are served on
// the plain path (plain.go) and given to srv at the first request that
// path leaves to net/http.
type Server struct {
	opt    Options
	cc     *xconnect.Conns
	srv    *nethttp.Server
	queue  *connQueue // srv's listener: the connections handed off
	start  sync.Once  // of srv
	routes atomic.Pointer[routeTable]
	mu     sync.Mutex
	all    []*route
}

// routeTable is the routes and their prefixes, replaced whole by Set and
// read without a lock per request.
type routeTable struct {
	routes   []*route
	prefixes []string
}

type route struct {
	Route
	proxy *httputil.ReverseProxy
	be    *conns
}

// maxHeaderBytes bounds a request's head on net/http's path (431
// beyond), as the control socket's: net/http's default, 1 MiB, held by
// each of a listener's connections at once while a client sends its head
// slowly, was a gigabyte of the supervisor's memory from anyone on the
// network. nginx takes at most 32 KiB (4 buffers of 8 KiB).
const maxHeaderBytes = 64 << 10

// NewServer makes a server with no route (every request a 404 until Set).
func NewServer(opt Options) *Server {
	if opt.ReadHeaderTimeout <= 0 {
		opt.ReadHeaderTimeout = 10 * time.Second
	}
	if opt.IdleTimeout <= 0 {
		opt.IdleTimeout = 2 * time.Minute
	}
	if opt.BackendTimeout <= 0 {
		opt.BackendTimeout = 60 * time.Second
	}
	if opt.SendTimeout <= 0 {
		opt.SendTimeout = 60 * time.Second
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	s := &Server{opt: opt, cc: xconnect.NewConns(opt.Log), queue: newConnQueue()}
	s.routes.Store(&routeTable{})
	s.srv = &nethttp.Server{Handler: s, ReadHeaderTimeout: opt.ReadHeaderTimeout, IdleTimeout: opt.IdleTimeout,
		MaxHeaderBytes: maxHeaderBytes, ErrorLog: slog.NewLogLogger(opt.Log.Handler(), slog.LevelDebug)}
	return s
}

// Set replaces the routes. Each route's backend connections are its own.
func (s *Server) Set(routes []Route) {
	rs := make([]*route, 0, len(routes))
	for _, r := range routes {
		if r.Stats == nil {
			r.Stats = &xconnect.Stats{}
		}
		r.Prefix = cleanPrefix(r.Prefix)
		rs = append(rs, s.newRoute(r))
	}
	// Longest prefix first: the first match is the longest.
	sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].Prefix) > len(rs[j].Prefix) })
	t := &routeTable{routes: rs, prefixes: make([]string, len(rs))}
	for i, r := range rs {
		t.prefixes[i] = r.Prefix
	}
	s.mu.Lock()
	old := s.all
	s.all = rs
	s.routes.Store(t)
	s.mu.Unlock()
	for _, r := range old {
		r.be.close()
	}
}

func cleanPrefix(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	if len(p) > 1 {
		p = strings.TrimRight(p, "/")
	}
	if p == "" {
		return "/" // it was all slashes
	}
	return p
}

// Match is the route of path, by longest prefix on segment boundaries,
// and the path the backend gets (the prefix stripped, a leading "/"
// kept); ok is false when no route takes it.
func Match(prefixes []string, path string) (i int, rest string, ok bool) {
	best, bestLen := -1, -1
	for j, p := range prefixes {
		if p = cleanPrefix(p); len(p) > bestLen && covers(p, path) {
			best, bestLen = j, len(p)
		}
	}
	if best < 0 {
		return -1, "", false
	}
	return best, strip(cleanPrefix(prefixes[best]), path), true
}

// match is Match over the table's prefixes, which Set cleaned and sorted
// longest first: the first that covers path is the route, and nothing is
// cleaned again per request.
func (t *routeTable) match(path string) (i int, rest string, ok bool) {
	for i, p := range t.prefixes {
		if covers(p, path) {
			return i, strip(p, path), true
		}
	}
	return -1, "", false
}

// covers reports whether the clean prefix p takes path: "/" takes all,
// another p itself and what is below it.
func covers(p, path string) bool {
	return p == "/" || path == p || (len(path) > len(p) && path[len(p)] == '/' && path[:len(p)] == p)
}

// strip is the path the backend gets of path under the clean prefix p.
func strip(p, path string) string {
	rest := path
	if p != "/" {
		rest = path[len(p):]
	}
	if rest == "" || rest[0] != '/' {
		rest = "/" + rest
	}
	return rest
}

func (s *Server) newRoute(r Route) *route {
	rt := &route{Route: r}
	rt.be = &conns{dial: r.Dial, headerTimeout: s.opt.BackendTimeout, cc: s.cc}
	rt.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "backend"
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			// Identity comes from the proxy only: what a client sent
			// is dropped on every route, as a backend behind an
			// ingress rule may trust these headers as a link's.
			pr.Out.Header.Del("X-PV-Client")
			pr.Out.Header.Del("X-PV-Role")
			if r.Client != "" {
				pr.Out.Header.Set("X-PV-Client", r.Client)
				pr.Out.Header.Set("X-PV-Role", r.Role)
			}
		},
		Transport:     rt.be,
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(s.opt.Log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w nethttp.ResponseWriter, req *nethttp.Request, err error) {
			r.Stats.Errors.Add(1)
			if errors.Is(err, context.Canceled) {
				return // the client went away
			}
			status := nethttp.StatusBadGateway
			var ne net.Error
			if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
				status = nethttp.StatusGatewayTimeout
			}
			s.opt.Log.Debug("http proxy: backend failed", "prefix", r.Prefix, "status", status, "err", err)
			nethttp.Error(w, nethttp.StatusText(status), status)
		},
	}
	return rt
}

// ServeHTTP routes one request.
func (s *Server) ServeHTTP(w nethttp.ResponseWriter, req *nethttp.Request) {
	t := s.routes.Load()
	i, rest, ok := t.match(req.URL.Path)
	if !ok {
		nethttp.NotFound(w, req)
		return
	}
	r := t.routes[i]
	st := r.Stats
	st.Connections.Add(1)
	st.Active.Add(1)
	defer st.Active.Add(-1)
	req.URL.Path, req.URL.RawPath = rest, stripEscaped(req.URL, r.Prefix)
	if req.Body != nil && req.Body != nethttp.NoBody {
		req.Body = &countingBody{ReadCloser: req.Body, n: &st.BytesUp}
	}
	r.proxy.ServeHTTP(&countingWriter{ResponseWriter: w, n: &st.BytesDown}, req)
}

// stripEscaped is u's path as the client escaped it, without prefix, when
// that escaping is not the default one (an encoded "/" must reach the
// backend encoded, or a segment would become two); "" otherwise. The URL
// only uses it when it decodes to the stripped Path.
func stripEscaped(u *url.URL, prefix string) string {
	if u.RawPath == "" || prefix == "/" {
		return u.RawPath
	}
	rest, ok := strings.CutPrefix(u.RawPath, prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return ""
	}
	if rest == "" {
		rest = "/"
	}
	return rest
}

// Serve serves on ln until Close.
func (s *Server) Serve(ln net.Listener) error {
	s.start.Do(func() {
		go func() {
			if err := s.srv.Serve(s.queue); err != nil && !errors.Is(err, nethttp.ErrServerClosed) {
				s.opt.Log.Error("http proxy: net/http's path stopped", "err", err)
			}
		}()
	})
	return s.cc.Serve(ln, s.serveConn)
}

// Close ends the server, its connections and the idle backend ones.
func (s *Server) Close() error {
	err := s.cc.Close()
	err = errors.Join(err, s.srv.Close())
	s.queue.Close()
	s.mu.Lock()
	for _, r := range s.all {
		r.be.close()
	}
	s.mu.Unlock()
	return err
}

// countingBody counts a request body as it streams to the backend.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	k, err := b.ReadCloser.Read(p)
	b.n.Add(int64(k))
	return k, err
}

// countingWriter counts a response as it streams to the client; Unwrap
// lets the proxy reach the connection for flushes and upgrades.
type countingWriter struct {
	nethttp.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	k, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(k))
	return k, err
}

func (w *countingWriter) Unwrap() nethttp.ResponseWriter { return w.ResponseWriter }

// ParseTarget splits an http target "IP:PORT[/prefix]" or ":PORT[/prefix]"
// (0.0.0.0 then) into the listen address and the path prefix ("/" when
// none).
func ParseTarget(s string) (addr, prefix string, err error) {
	_, path, _ := strings.Cut(s, "/")
	ap, msg := state.ParseLinkTarget(s)
	if msg != "" {
		return "", "", fmt.Errorf("target %q: %s", s, msg)
	}
	return ap.String(), cleanPrefix(path), nil
}

// Link is an http link's proxy: one route, the consumer's identity on
// every request.
type Link struct{ *Server }

// New makes the proxy of an xconnect http link.
func New(cfg xconnect.Config) xconnect.Proxy {
	s := NewServer(Options{Log: cfg.Log})
	_, prefix, err := ParseTarget(cfg.Link.ConsumerEnd())
	if err != nil {
		prefix = "/"
	}
	s.Set([]Route{{Prefix: prefix, Dial: cfg.Dial, Stats: cfg.Stats, Client: cfg.Link.Consumer, Role: cfg.Link.Role}})
	return Link{s}
}

package ctrl

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pantavisor/pv/internal/throttle"
)

// The socket's limits (package documentation, "Limits").
const (
	// DefaultMaxConns is how many connections the server holds at once.
	DefaultMaxConns = 256
	// headerTimeout bounds the time from a request's first byte to the
	// end of its header.
	headerTimeout = 10 * time.Second
	// bodyTimeout bounds the reading of a request's body; an object
	// upload instead must make progress every bodyTimeout.
	bodyTimeout = 30 * time.Second
	// writeTimeout bounds every write of an answer (a stalled reader).
	writeTimeout = 30 * time.Second
	// idleTimeout closes keep-alive connections with no request.
	idleTimeout = 2 * time.Minute
	// streamChunk is how much of a streamed answer is written per write
	// deadline.
	streamChunk = 1 << 20
	// refuseTimeout bounds the writing of the refusal of a connection
	// beyond the cap.
	refuseTimeout = time.Second
	// refuseLogEvery rate-limits the log line of refused connections.
	refuseLogEvery = 10 * time.Second
)

// msgTooManyConns answers a connection beyond the cap.
const msgTooManyConns = "Too many connections"

// refusal is the whole answer to a connection beyond the cap.
var refusal = []byte("HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Length: " + strconv.Itoa(len(refusalBody)) + "\r\n" +
	"Retry-After: 1\r\n" +
	"Connection: close\r\n\r\n" + refusalBody)

const refusalBody = `{"Error":"` + msgTooManyConns + `"}`

// SetMaxConns sets how many connections the server holds at once
// (DefaultMaxConns when n <= 0). It must be called before Serve.
func (s *Server) SetMaxConns(n int) {
	if n <= 0 {
		n = DefaultMaxConns
	}
	s.conns.max = int64(n)
}

// connLimit counts a server's open connections across its listeners.
//
// Besides the cap on all of them, connections from outside the host
// (containers) have caps of their own: each source (a pid namespace: a
// container) at most a quarter of the cap, all of them together the cap
// less an eighth. A container opening connections without end (any
// container may connect: the socket is in every one) would otherwise
// take every slot, and pvcontrol on the host, or a management container,
// would be refused for as long as it kept at it.
type connLimit struct {
	max    int64
	active atomic.Int64
	// refusingGuests and refusingHost count the refusals under way.
	refusingGuests, refusingHost atomic.Int64
	// source says where a connection comes from; nil takes every one
	// for the host's.
	source func(net.Conn) connSource

	mu sync.Mutex
	// guests counts the connections not from the host, bySource those
	// of each source.
	guests   int64
	bySource map[uint64]int64

	// refusals keeps their log to a line per refuseLogEvery.
	refusals *throttle.Throttle
}

// limitListener refuses connections beyond its limit at accept: they are
// answered 503 {"Error":"Too many connections"} and closed, without ever
// reaching the HTTP server or the caller resolver.
type limitListener struct {
	net.Listener
	lim *connLimit
	s   *Server
}

func (l limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := connSource{host: true}
		if l.lim.source != nil {
			src = l.lim.source(socketOf(c))
		}
		if l.lim.take(src) {
			return &countedConn{Conn: c, lim: l.lim, src: src}, nil
		}
		l.s.logRefused()
		// Each refusal holds its connection until its head comes (up
		// to refuseTimeout) and the client reads the answer: a
		// container opening connections without end, sending nothing,
		// would otherwise make the server hold as many descriptors as
		// it opens in that time (tens of thousands). Beyond
		// maxRefusingGuests refusals of containers under way, one more
		// is refused at once, without waiting for its head. The host's
		// refusals have the much larger maxRefusingHost: a storm of its
		// well-formed clients gets answers, not resets.
		n, limit := &l.lim.refusingGuests, int64(maxRefusingGuests)
		if src.host {
			n, limit = &l.lim.refusingHost, maxRefusingHost
		}
		if n.Add(1) > limit {
			n.Add(-1)
			refuseNow(socketOf(c))
			continue
		}
		go func() {
			defer n.Add(-1)
			refuse(socketOf(c))
		}()
	}
}

// maxRefusingGuests and maxRefusingHost bound the refusals under way
// (limitListener.Accept) of containers and of the host.
const maxRefusingGuests, maxRefusingHost = 128, 1024

// refuse waits for the request head, writes the refusal to c and closes
// it. An answer written before the request is, to an HTTP client, a
// response on an idle connection: Go's Transport (pvcontrol's) drops it
// and fails the request with no status at all, so a refused pvcontrol
// would not say it was refused. Shutting down the write side first and
// draining what the client sent lets it read the answer instead of a
// reset.
func refuse(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(refuseTimeout))
	readHead(c, 8<<10)
	_ = c.SetDeadline(time.Now().Add(refuseTimeout))
	if _, err := c.Write(refusal); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// readHead reads from c up to the blank line that ends a request head,
// at most limit bytes, until an error (the deadline).
func readHead(c net.Conn, limit int) {
	buf := make([]byte, 0, 1024)
	for len(buf) < limit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		// The end is searched for from a few bytes before what came, as
		// it may straddle two reads.
		if bytes.Contains(buf[max(0, len(buf)-n-3):], []byte("\r\n\r\n")) || err != nil {
			return
		}
	}
}

// logRefused logs refused connections, at most once per refuseLogEvery.
func (s *Server) logRefused() {
	if n, ok := s.conns.refusals.Event(); ok {
		s.log.Warn("ctrl: connections refused: too many connections", "refused", n, "max", s.conns.max)
	}
}

// connSource is where a connection comes from: the host (pantavisor's
// own pid namespace, or above it), or the pid namespace key.
type connSource struct {
	host bool
	key  uint64
}

// perSource is the cap of one source other than the host.
func (l *connLimit) perSource() int64 { return max(1, l.max/4) }

// guestCap is the cap of all sources but the host together: the rest is
// kept for the host.
func (l *connLimit) guestCap() int64 { return max(1, l.max-l.max/8) }

// take counts a connection from src in, or says it is beyond a cap.
func (l *connLimit) take(src connSource) bool {
	if l.active.Add(1) > l.max {
		l.active.Add(-1)
		return false
	}
	if src.host {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.guests >= l.guestCap() || l.bySource[src.key] >= l.perSource() {
		l.active.Add(-1)
		return false
	}
	if l.bySource == nil {
		l.bySource = map[uint64]int64{}
	}
	l.guests++
	l.bySource[src.key]++
	return true
}

// give counts a connection from src out.
func (l *connLimit) give(src connSource) {
	l.active.Add(-1)
	if src.host {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.guests--
	if l.bySource[src.key]--; l.bySource[src.key] <= 0 {
		delete(l.bySource, src.key)
	}
}

// countedConn gives its slot back when closed.
type countedConn struct {
	net.Conn
	lim  *connLimit
	src  connSource
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.lim.give(c.src) })
	return c.Conn.Close()
}

// NetConn is the socket itself under every wrapper, for its peer
// credentials.
func (c *countedConn) NetConn() net.Conn { return socketOf(c.Conn) }

// socketOf is the connection under every wrapper that has NetConn.
func socketOf(c net.Conn) net.Conn {
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		c = u.NetConn()
	}
}

// deadlineBody bounds the reading of a request body: the whole body within
// timeout, or, when renew is set (object uploads), each read within
// timeout. Once the body ends the deadline is lifted, so a handler that
// runs long after reading (POST /commands) is not cut off by net/http's
// background read timing out. A read that fails leaves the deadline as it
// is: after the handler's answer net/http reads what is left of a body
// (up to 256 KiB, to keep the connection), and with no deadline a client
// that announced a body and never sends it would hold the connection, and
// its slot under the cap, for ever.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	renew   bool
	timeout time.Duration
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.renew {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// limitBody applies the body timeout of a route whose limit is limit to r.
// The deadline ServeHTTP set for an unread body is then this one.
func (s *Server) limitBody(rw http.ResponseWriter, r *http.Request, limit int64) {
	if limit == 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	rc := http.NewResponseController(rw)
	_ = rc.SetReadDeadline(time.Now().Add(s.bodyTimeout))
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, renew: limit > maxSmallBody, timeout: s.bodyTimeout}
}

// boundUnreadBody gives a request with a body the body timeout from the
// start, before any check: an answer given without reading the body (a
// refusal, an unknown endpoint, a route that takes none) makes net/http
// read what is left of it, and without a deadline a client that never
// sends its announced body would hold the connection for ever.
func (s *Server) boundUnreadBody(rw http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	_ = http.NewResponseController(rw).SetReadDeadline(time.Now().Add(s.bodyTimeout))
}

// maxSmallBody is the largest body limit read under one bodyTimeout; a
// route accepting more (object uploads) must only make progress.
const maxSmallBody = 1 << 20

// renewWrite pushes the connection's write deadline writeTimeout ahead:
// every write of an answer (not the whole answer) must complete within it,
// and a handler may take long before its first write. It renews at most
// once per renewEvery: moving the deadline costs a timer update in the
// runtime poller, and a small answer's WriteHeader and Write come
// microseconds apart, so each write still has writeTimeout less at most
// renewEvery.
func (t *trackWriter) renewWrite() {
	now := time.Now()
	if !t.renewed.IsZero() && now.Sub(t.renewed) < renewEvery {
		return
	}
	t.renewed = now
	if t.rc == nil {
		t.rc = http.NewResponseController(t.ResponseWriter)
	}
	_ = t.rc.SetWriteDeadline(now.Add(writeTimeout))
}

// renewEvery is how often, at most, renewWrite moves the write deadline.
const renewEvery = time.Second

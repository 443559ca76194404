package http

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	nethttp "net/http"
	"slices"
	"sync"
	"time"

	"github.com/pantavisor/pv/xconnect"
	"golang.org/x/sys/unix"
)

// conns is a route's way to its backend: each request is written and its
// answer's head read on the handler's own goroutine, over a kept-alive
// connection from a free list. net/http's Transport passes every request
// to two goroutines of the connection (a writer and a reader) and the
// answer back through channels; for the small requests an ingress mostly
// carries, those hand-offs were a large share of the proxy's CPU.
type conns struct {
	dial xconnect.Dialer
	// cc tracks every connection, from its dial to its close, so that
	// the server's Close ends an exchange that waits on its backend (an
	// answer streamed for ever); nil in tests of conns alone.
	cc            *xconnect.Conns
	headerTimeout time.Duration
	// idleFor is how long a connection is kept unused (0: idleTimeout).
	idleFor time.Duration
	// keep is how many idle connections are kept at most (0: maxIdle).
	keep int

	mu   sync.Mutex
	idle []*backConn // most recently used last, so the oldest first
	// sweep closes the connections kept past idleFor; nil while none is
	// kept. Without it, the connections a burst opened would stay open
	// (half-closed once the backend drops them) for as long as a trickle
	// of requests only ever takes the newest.
	sweep  *time.Timer
	closed bool
}

// Idle connections kept per backend, and how long one may wait unused (a
// backend closes its own idle ones: nginx after 75 s, Go's after its
// IdleTimeout).
const (
	maxIdle     = 64
	idleTimeout = 60 * time.Second
)

func (b *conns) idleLimit() time.Duration {
	if b.idleFor > 0 {
		return b.idleFor
	}
	return idleTimeout
}

func (b *conns) keepLimit() int {
	if b.keep > 0 {
		return b.keep
	}
	return maxIdle
}

// Transport is a route's way to its backend, for a proxy of its own on
// httputil.ReverseProxy (the rest link's): its idle connections count in
// the process-wide descriptor budget as a route's do, which net/http's
// Transport gives no way to do (it returns a connection to its pool, and
// only then tells, when a request may already have taken it).
type Transport struct{ b *conns }

// TransportOptions are a Transport's limits.
type TransportOptions struct {
	// HeaderTimeout bounds the wait for an answer's head (0: 60 s, as
	// Options.BackendTimeout: none would fail every request at once).
	HeaderTimeout time.Duration
	// MaxIdle is how many idle connections are kept at most (0: 64),
	// and IdleTimeout how long one is kept unused (0: 60 s).
	MaxIdle     int
	IdleTimeout time.Duration
}

// NewTransport makes the Transport to the backend dial reaches.
func NewTransport(dial xconnect.Dialer, o TransportOptions) *Transport {
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = 60 * time.Second
	}
	return &Transport{b: &conns{dial: dial, headerTimeout: o.HeaderTimeout, idleFor: o.IdleTimeout, keep: o.MaxIdle}}
}

// RoundTrip sends req and returns the answer with its head read.
func (t *Transport) RoundTrip(req *nethttp.Request) (*nethttp.Response, error) {
	return t.b.RoundTrip(req)
}

// Close closes the idle connections, and those given back later: the
// proxy is gone.
func (t *Transport) Close() { t.b.close() }

type backConn struct {
	net.Conn
	sr *sendRead // what br reads from
	br *bufio.Reader
	bw *bufio.Writer
	// reused says it carried a request before: an error before any answer
	// may then be the backend's close of an idle connection, and a request
	// that can be sent again is.
	reused bool
	idleAt time.Duration    // on mono's clock
	header standingDeadline // the header timeout, until lift
	cc     *xconnect.Conns  // that tracks it, or nil
}

// Close closes the connection and forgets it in the server's bookkeeping.
func (c *backConn) Close() error {
	if c.cc != nil {
		c.cc.Untrack(c)
	}
	return c.Conn.Close()
}

// lift takes the header timeout away, before a body is read from the
// socket: most answers come whole with their head and need no lift.
func (c *backConn) lift() error { return c.header.lift(c.Conn) }

// aLongTimeAgo is a deadline that ends any blocked read or write at once.
var aLongTimeAgo = time.Unix(1, 0)

// RoundTrip sends req and returns the answer with its head read; its body
// streams from the connection, which goes back to the free list once the
// body is read to the end.
func (b *conns) RoundTrip(req *nethttp.Request) (*nethttp.Response, error) {
	var res *nethttp.Response
	resend := (req.Body == nil || req.Body == nethttp.NoBody) && replayable(req.Method, hasIdempotencyKey(req.Header))
	if _, err := b.attempt(req.Context(), resend, func(c *backConn) (err error) {
		res, err = b.exchange(c, req)
		return err
	}); err != nil {
		return nil, err
	}
	return res, nil
}

// open checks that a kept connection still is: not closed by its backend
// (an end of stream, or bytes it sent unasked, wait in it). A request
// that cannot be sent again goes on one only after this look, a system
// call; the backend may still drop it meanwhile, rarely.
func (c *backConn) open() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if c.sr.rc == nil {
		return true // no raw access: not looked at
	}
	open := false
	if c.sr.rc.Control(func(fd uintptr) {
		var b [1]byte
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		open = errors.Is(err, unix.EAGAIN)
	}) != nil {
		return false
	}
	return open
}

// replayable says whether a request without a body may be sent again:
// only when doing it twice is harmless, by its method or because the
// client said so with an Idempotency-Key (or X-Idempotency-Key) field
// (net/http's Transport's rule). A backend that drops a kept connection
// may have acted on a POST before it did.
func replayable(method string, idempotencyKey bool) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return idempotencyKey
}

// idempotencyKeys are the fields by which a client says a request may be
// sent twice.
var idempotencyKeys = []string{"Idempotency-Key", "X-Idempotency-Key"}

// hasIdempotencyKey reports whether h has one of idempotencyKeys, with
// any value, an empty one too: net/http's Transport counts the field's
// presence, and so does the plain path (parseRequestHead), so that a
// request is sent again or not whichever way it took.
func hasIdempotencyKey(h nethttp.Header) bool {
	for _, k := range idempotencyKeys {
		if _, ok := h[k]; ok { // the keys are canonical, as h's are
			return true
		}
	}
	return false
}

// attempt runs try on a kept or a new connection and returns the
// connection try succeeded on. One that fails is closed. A kept one may
// have been closed by its backend while idle: a request that can be sent
// again (resend: see replayable) then goes on the next one, another kept
// one (each tried once) or a new one, unless it failed by the header
// timeout (the backend has it; the client would wait twice as long). A
// ctx that ended is the error (the client or the server went away: not
// the backend's failure).
func (b *conns) attempt(ctx context.Context, resend bool, try func(*backConn) error) (*backConn, error) {
	for {
		c, err := b.get(ctx)
		if err != nil {
			return nil, err
		}
		if c.reused && !resend && !c.open() {
			c.Close()
			continue
		}
		if err = try(c); err == nil {
			return c, nil
		}
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ne net.Error
		if !c.reused || !resend || errors.As(err, &ne) && ne.Timeout() {
			return nil, err
		}
	}
}

// get takes the most recently used idle connection, or dials a new one.
func (b *conns) get(ctx context.Context) (*backConn, error) {
	now := mono()
	b.mu.Lock()
	for n := len(b.idle); n > 0; n = len(b.idle) {
		c := b.idle[n-1]
		b.idle = b.idle[:n-1]
		xconnect.GiveDescriptors(1) // its client's Gate counts it now
		if now-c.idleAt < b.idleLimit() {
			b.mu.Unlock()
			return c, nil
		}
		c.Close()
	}
	b.mu.Unlock()
	conn, err := b.dial(ctx)
	if err != nil {
		return nil, err
	}
	sr := newSendRead(conn)
	c := &backConn{Conn: conn, sr: sr, br: bufio.NewReaderSize(sr, 16<<10), bw: bufio.NewWriterSize(conn, 16<<10), cc: b.cc}
	if b.cc != nil && !b.cc.Track(c) {
		conn.Close()
		return nil, net.ErrClosed
	}
	return c, nil
}

// put returns c to the free list, or closes it. A kept connection
// outlives its client's, whose Gate counted it: while it is idle it takes
// a descriptor of the process-wide budget of its own, and is closed
// rather than kept when the budget has none (the routes' idle
// connections, up to keepLimit each, would otherwise hold descriptors
// beyond it).
func (b *conns) put(c *backConn) {
	c.reused, c.idleAt = true, mono()
	if !xconnect.TakeDescriptors(1) {
		c.Close()
		return
	}
	b.mu.Lock()
	if !b.closed && len(b.idle) < b.keepLimit() {
		b.idle = append(b.idle, c)
		c = nil
		if b.sweep == nil {
			b.sweep = time.AfterFunc(b.idleLimit(), b.expire)
		}
	}
	b.mu.Unlock()
	if c != nil {
		xconnect.GiveDescriptors(1)
		c.Close()
	}
}

// expire closes the connections unused for idleFor, the oldest first, and
// sets the sweep again for the next one due.
func (b *conns) expire() {
	now, limit := mono(), b.idleLimit()
	b.mu.Lock()
	n := 0
	for n < len(b.idle) && now-b.idle[n].idleAt >= limit {
		n++
	}
	old := slices.Clone(b.idle[:n])
	b.idle = slices.Delete(b.idle, 0, n)
	if len(b.idle) > 0 && !b.closed {
		b.sweep.Reset(limit - (now - b.idle[0].idleAt))
	} else {
		b.sweep = nil
	}
	b.mu.Unlock()
	xconnect.GiveDescriptors(len(old))
	for _, c := range old {
		c.Close()
	}
}

// close closes the free list, and the connections given back later: the
// route is gone.
func (b *conns) close() {
	b.mu.Lock()
	idle := b.idle
	b.idle = nil
	b.closed = true
	if b.sweep != nil {
		b.sweep.Stop()
		b.sweep = nil
	}
	b.mu.Unlock()
	xconnect.GiveDescriptors(len(idle))
	for _, c := range idle {
		c.Close()
	}
}

// exchange writes req on c and reads the answer's head, within the
// header timeout, interim 1xx answers skipped (the server answers
// "Expect: 100-continue" itself).
func (b *conns) exchange(c *backConn, req *nethttp.Request) (*nethttp.Response, error) {
	// A client gone away ends the exchange, and the body's streaming.
	stop := context.AfterFunc(req.Context(), func() { c.SetDeadline(aLongTimeAgo) })
	werr := req.Write(c.bw)
	if werr == nil {
		werr = c.bw.Flush()
	}
	c.header.lost() // set here, and taken away below
	if err := c.SetReadDeadline(time.Now().Add(b.headerTimeout)); err != nil {
		stop()
		return nil, err
	}
	var res *nethttp.Response
	var err error
	// The heads, interim ones included, within maxRespHead (and what the
	// reader buffers past them), as on the plain path.
	c.sr.limitHead(maxRespHead + c.br.Size())
	for {
		res, err = nethttp.ReadResponse(c.br, req)
		if err != nil || res.StatusCode >= 200 || res.StatusCode == nethttp.StatusSwitchingProtocols {
			break
		}
	}
	c.sr.unlimitHead()
	if err != nil {
		stop()
		if werr != nil {
			return nil, werr
		}
		return nil, err
	}
	// An answer given before the whole body was taken (413, say) stands,
	// but the connection is not used again.
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		werr = err
	}
	if res.StatusCode == nethttp.StatusSwitchingProtocols {
		// The proxy now copies both ways and closes it when done.
		stop()
		res.Body = &upgraded{Reader: c.br, backConn: c}
		return res, nil
	}
	res.Body = &keptBody{body: res.Body, c: c, b: b, stop: stop, reuse: werr == nil && !res.Close && !req.Close}
	return res, nil
}

// upgraded is the connection of a 101 answer, bytes the reader holds first.
type upgraded struct {
	io.Reader
	*backConn
}

func (u *upgraded) Read(p []byte) (int, error) { return u.Reader.Read(p) }

// keptBody gives c back when the body was read to its end, and closes it
// when the body is closed before.
type keptBody struct {
	body  io.ReadCloser
	c     *backConn
	b     *conns
	stop  func() bool
	reuse bool
	done  bool
}

func (k *keptBody) Read(p []byte) (int, error) {
	if k.done {
		return 0, io.EOF
	}
	n, err := k.body.Read(p)
	if errors.Is(err, io.EOF) {
		k.release(true)
	} else if err != nil {
		k.release(false)
	}
	return n, err
}

func (k *keptBody) Close() error {
	if !k.done {
		k.release(false)
	}
	return nil
}

// release ends the body once: c goes back to the free list when the body
// ended cleanly, its answer allows it, and the client's context did not
// already cut it.
func (k *keptBody) release(clean bool) {
	k.done = true
	if k.stop() && clean && k.reuse {
		k.b.put(k.c)
		return
	}
	k.c.Close()
}

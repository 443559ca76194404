package http

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/http/httputil"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/xconnect"
	"github.com/pantavisor/pv/xconnect/hangup"
)

// plainServed and handedOff count requests answered on the plain path
// and connections given to net/http, for the tests that check which path
// a kind of request takes.
var plainServed, handedOff atomic.Int64

// serveConn serves one client connection's requests on the plain path
// (fast.go), and hands the connection to net/http at the first request
// that path leaves, before consuming any of it.
//
// Requests that come whole and without a body are served inside one call
// of the connection's RawConn.Read, for as long as they keep coming (see
// clientConn.ready); the others, every connection whose peer has hung up,
// and every connection when no hang-up watcher could be had, in turns of
// their own outside it.
func (s *Server) serveConn(c net.Conn) {
	growStack()
	cc := &clientConn{s: s, c: c, ip: clientIP(c), cr: clientReader{c: c, fd: -1}}
	cc.cw = clientWriter{c: c, r: &cc.cr, timeout: s.opt.SendTimeout, dl: standingDeadline{write: true}}
	cc.br = bufio.NewReaderSize(&cc.cr, clientBuf)
	if cc.prepare() {
		defer cc.unwatch()
	}
	for {
		t := turnSlow
		if cc.rc != nil {
			err := cc.rc.Read(cc.call)
			switch {
			case err == nil:
				t = cc.left
			case cc.wt != nil && cc.wt.HungUp():
				// Woken by the watcher (a past read deadline).
				t = turnHup
			default:
				return // gone, closed, or silent for a timeout
			}
		}
		if t == turnHup {
			cc.hungUp()
			t = turnSlow
		}
		if t == turnSlow {
			t = cc.turn(false)
		}
		if t != turnNext {
			return // turnEnd; a slow turn never waits (turnWait)
		}
	}
}

// growStack grows the connection's goroutine stack to the 8 KiB its
// first exchange needs while the stack is still shallow. A goroutine
// starts with 2 KiB, and that exchange otherwise grew it twice, deep in
// the backend's read, where each copy walks many frames: 9 % of the
// proxy's CPU for clients that open a connection per request
// (copystack in a profile; 1.3 % with this).
//
//go:noinline
func growStack() byte {
	var b [6 << 10]byte
	return lastOf(b[:])
}

//go:noinline
func lastOf(b []byte) byte { return b[len(b)-1] }

// A clientConn is a client connection on the plain path.
//
// Go's poller reads a socket before it waits on it, because a read
// forgets whether the socket became readable before it started; after an
// answer the client's next request has mostly not come yet, and that read
// fails (EAGAIN): one of the few system calls per request the proxy
// makes, each on a small device about as costly as a request's work in
// user space. Within one RawConn.Read, whose callback returns false to
// wait, nothing is forgotten: so the fast turns run inside it, and a read
// shorter than the buffer (the socket then had no more) is followed by a
// wait, not by another read, as nginx does. An end of stream that came
// with the last bytes read would then never wake that wait: the hang-up
// watcher does (package hangup), and from then on the connection reads
// before every wait, which no longer blocks.
//
// The callback holds the connection's read lock, so a fast turn reads
// nothing but the request head it can read at once: a turn that needs
// more (a body, a hand-off to net/http) leaves the callback and runs
// again as a slow turn. The connection's Close waits for the callback to
// return; xconnect.Conns closes the backend connections, which it
// tracks, before the client ones, so that the turn's wait ends first.
type clientConn struct {
	s  *Server
	c  net.Conn
	ip string
	cr clientReader
	cw clientWriter
	br *bufio.Reader
	rc syscall.RawConn // nil: every turn is a slow one
	// pending registers the connection with the hang-up watcher before
	// its first wait after a read that found data (one after a read
	// that found nothing needs none); wt is that registration, nil until
	// then.
	pending hangup.Pending
	wt      *hangup.Watch
	call    func(uintptr) bool
	left    turn // what the callback returned for
	// idle: the idle timeout is set for the next request; timed: the
	// read-header timeout is set for the head being read.
	idle, timed bool
	idleDL      standingDeadline
}

// prepare readies the connection for fast turns: safe only with a hang-up
// watcher, which the connection is registered with before its first wait
// after a read that found data (watch). Without one every turn is a slow
// one.
func (cc *clientConn) prepare() bool {
	c, ok := cc.c.(hangup.Conn)
	if !ok {
		return false
	}
	p, rc, err := hangup.Prepare(c)
	if err != nil {
		cc.s.opt.Log.Debug("http proxy: no hang-up watch, no fast turns", "err", err)
		return false
	}
	cc.pending, cc.rc, cc.call = p, rc, cc.ready
	return true
}

// watch registers the socket fd (in a fast turn) with the hang-up watcher
// if it is not yet; false: it could not be, and no turn is a fast one
// from now on.
func (cc *clientConn) watch(fd int) bool {
	if cc.wt != nil {
		return true
	}
	wt, err := cc.pending.Watch(fd)
	if err != nil {
		cc.s.opt.Log.Debug("http proxy: no hang-up watch, no fast turns", "err", err)
		cc.rc = nil
		return false
	}
	cc.wt = wt
	watched.Add(1)
	return true
}

func (cc *clientConn) unwatch() {
	if cc.wt != nil {
		cc.wt.Stop()
	}
}

// watched counts the connections registered with the hang-up watcher, for
// the test that only those that wait after data are.
var watched atomic.Int64

// hungUp turns the connection to slow turns for good: its peer has hung
// up, so its reads no longer block, and the watcher's wake, done by now,
// is undone.
func (cc *clientConn) hungUp() {
	if cc.wt != nil {
		cc.wt.Woke() // waits for a wake under way
	}
	cc.rc, cc.cr.fd = nil, -1
	cc.c.SetReadDeadline(time.Time{})
	cc.idle, cc.timed = false, false
	cc.idleDL.lost()
}

// A turn's outcome.
type turn int

const (
	turnNext turn = iota // a request served: the next one
	turnWait             // a fast turn needs the client's next bytes
	turnSlow             // a fast turn that must run as a slow one
	turnHup              // the client has hung up: no more fast turns
	turnEnd              // the connection ends
)

// fastTurns counts the requests served inside the read callback, for the
// tests that check which requests take that way.
var fastTurns atomic.Int64

// testHookWaiting, when set by a test, runs when a fast turn is about
// to wait for the client's next bytes without reading first.
var testHookWaiting func(*clientConn)

// pollerWrites counts the answers a fast turn could not write at once,
// for the test of that path.
var pollerWrites atomic.Int64

// ready is the callback of the connection's RawConn.Read: called with the
// socket first at once, then each time it may have become readable. It
// serves requests until one needs the client's next bytes (false: wait
// for them) or a slow turn (true).
func (cc *clientConn) ready(fd uintptr) bool {
	if cc.wt != nil && !cc.wt.Woke() {
		cc.cr.fd, cc.left = -1, turnHup
		return true
	}
	cc.cr.fd, cc.cr.drained, cc.cr.empty = int(fd), false, false
	for {
		t := cc.turn(true)
		switch t {
		case turnNext:
			continue
		case turnWait:
			if cc.wt == nil && cc.cr.empty {
				// The socket said it held nothing: whatever comes
				// now, its end too, wakes the wait, which needs no
				// watcher. A client that opens a connection per
				// request mostly waits only here, before its
				// request, and is never registered.
				return false
			}
			if !cc.watch(int(fd)) {
				t = turnSlow
				break
			}
			if cc.wt.Waiting() {
				if testHookWaiting != nil {
					testHookWaiting(cc)
				}
				return false
			}
			t = turnHup
		}
		cc.cr.fd, cc.left = -1, t
		return true
	}
}

// turn reads a request head and serves the request. A fast turn (inside
// ready) leaves a request with a body, or one net/http takes, to a slow
// turn, before consuming any of it.
func (cc *clientConn) turn(fast bool) turn {
	s, c, br := cc.s, cc.c, cc.br
	if br.Buffered() == 0 {
		if !cc.idle {
			cc.idleDL.arm(c, s.opt.IdleTimeout)
			cc.idle = true
		}
		if _, err := br.Peek(1); err != nil {
			return waitOrEnd(err) // gone, or silent for the idle timeout
		}
	}
	// The head's timeout is set only when it did not come whole with
	// its first bytes, as it mostly does: a deadline costs a clock read
	// and a timer.
	n := 0
	for {
		buf, _ := br.Peek(br.Buffered())
		if n = headEnd(buf); n != 0 {
			break
		}
		if br.Buffered() == br.Size() {
			n = -1 // larger than the plain path takes
			break
		}
		if !cc.timed {
			c.SetReadDeadline(deadline(s.opt.ReadHeaderTimeout))
			cc.timed = true
			cc.idleDL.lost()
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return waitOrEnd(err) // half a head, then gone or too slow
		}
	}
	bufs := bufPool.Get().(*exchangeBufs)
	var h reqHead
	ok := n > 0
	if ok {
		head, _ := br.Peek(n)
		h, ok = parseRequestHead(head, bufs.reqFields)
		bufs.reqFields = h.fields
	}
	if fast && (!ok || h.length != 0) {
		putBufs(bufs)
		return turnSlow
	}
	if fast {
		// Counted before the answer is written, so that a test that
		// has read it sees the count.
		fastTurns.Add(1)
	}
	cc.idle, cc.timed = false, false
	if h.length > 0 {
		cc.idleDL.lost() // the body's reads set deadlines of their own
	}
	if ok {
		ok = s.plain(c, &cc.cw, br, n, &h, cc.ip, bufs)
	} else {
		s.handoff(c, br)
	}
	putBufs(bufs)
	if !ok {
		return turnEnd
	}
	return turnNext
}

func waitOrEnd(err error) turn {
	if err == errWouldBlock {
		return turnWait
	}
	return turnEnd
}

// errWouldBlock: a fast turn's read found nothing to read.
var errWouldBlock = errors.New("nothing to read yet")

// clientReader is what a client connection's requests are read from: in
// a fast turn the socket itself, never waiting (errWouldBlock), else the
// connection.
type clientReader struct {
	c  net.Conn
	fd int // the socket in a fast turn, else -1
	// drained: the last read was shorter than asked, so the socket had
	// no more; another read before a wait would only fail. empty: that
	// read failed (EAGAIN), so the socket held nothing, not even its end.
	drained, empty bool
}

func (r *clientReader) Read(p []byte) (int, error) {
	if r.fd < 0 {
		return r.c.Read(p)
	}
	if r.drained || len(p) == 0 {
		return 0, errWouldBlock
	}
	n, err := xconnect.RawRead(r.fd, p)
	switch {
	case errors.Is(err, unix.EAGAIN):
		r.drained, r.empty = true, true
		return 0, errWouldBlock
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	case n == 0:
		return 0, io.EOF
	}
	r.drained, r.empty = n < len(p), false
	return n, nil
}

// clientWriter writes a client's answers: in a fast turn to the socket
// itself, as sendRead writes requests, and through the poller (which
// waits, for the send timeout at most) only what the socket cannot take
// at once.
type clientWriter struct {
	c       net.Conn
	r       *clientReader
	timeout time.Duration
	dl      standingDeadline
}

func (w *clientWriter) Write(p []byte) (int, error) {
	if w.r.fd < 0 {
		return w.wait(p)
	}
	n, err := xconnect.RawWriteNow(w.r.fd, p)
	if err != nil {
		return n, os.NewSyscallError("write", err)
	}
	if n < len(p) {
		pollerWrites.Add(1)
		k, err := w.wait(p[n:])
		return n + k, err
	}
	return n, nil
}

// wait writes p through the poller, which waits while the client takes
// none of it, for the send timeout at most.
func (w *clientWriter) wait(p []byte) (int, error) {
	if err := w.dl.arm(w.c, w.timeout); err != nil {
		return 0, err
	}
	return w.c.Write(p)
}

// standingDeadline is a deadline set again and again for the same kind
// of wait (a client's idle timeout before each request, a backend's
// header timeout before each answer, the send timeout of an answer's
// write that waits). One set less than slack ago stands: a deadline is a
// timer, and setting one for every request of a busy connection was a
// measurable share of the proxy's CPU; the timeout is then up to slack
// shorter.
type standingDeadline struct {
	setAt time.Duration // on mono's clock; 0 when set to another since
	write bool          // a write deadline, not a read one
}

func (sd *standingDeadline) arm(c net.Conn, d time.Duration) error {
	now := mono()
	if sd.setAt != 0 && now-sd.setAt < slack(d) {
		return nil
	}
	sd.setAt = now
	return sd.set(c, deadline(d))
}

// mono is the time since the package started on the monotonic clock,
// never 0. It is what the checks made per request read: time.Since reads
// the monotonic clock alone, time.Now the wall clock too.
func mono() time.Duration { return time.Since(monoEpoch) + 1 }

var monoEpoch = time.Now()

func (sd *standingDeadline) set(c net.Conn, t time.Time) error {
	if sd.write {
		return c.SetWriteDeadline(t)
	}
	return c.SetReadDeadline(t)
}

// lost says the deadline was set to something else.
func (sd *standingDeadline) lost() { sd.setAt = 0 }

// lift takes the deadline away, if it stands.
func (sd *standingDeadline) lift(c net.Conn) error {
	if sd.setAt == 0 {
		return nil
	}
	sd.lost()
	return sd.set(c, time.Time{})
}

// slack is how much shorter than d a timeout set earlier for the same
// wait may run: a second, or an eighth of a shorter d.
func slack(d time.Duration) time.Duration { return min(time.Second, d/8) }

// handoff gives c to net/http, with what br holds read first, and waits
// until net/http is done with it (the caller closes c on return) or the
// server closes.
func (s *Server) handoff(c net.Conn, br *bufio.Reader) {
	handedOff.Add(1)
	c.SetReadDeadline(time.Time{})
	h := &handoffConn{Conn: c, br: br, done: make(chan struct{}), sendTimeout: s.opt.SendTimeout, dl: standingDeadline{write: true}}
	select {
	case s.queue.conns <- h:
	case <-s.cc.Context().Done():
		return
	}
	select {
	case <-h.done:
	case <-s.cc.Context().Done():
	}
}

// plain serves the request whose head (n bytes) br holds, and reports
// whether the connection goes on.
func (s *Server) plain(c net.Conn, w io.Writer, br *bufio.Reader, n int, h *reqHead, ip string, bufs *exchangeBufs) bool {
	if bufs.cw == nil {
		bufs.cw = bufio.NewWriterSize(w, 4<<10)
	} else {
		bufs.cw.Reset(w)
	}
	defer bufs.cw.Reset(nil) // the pool must not keep the connection
	cw := bufs.cw
	// What the answer needs of the head, which is consumed below.
	http10, head, asksClose, length := h.minor == '0', string(h.method) == "HEAD", h.closeAfter, h.length
	resend := length == 0 && replayable(string(h.method), h.idempotent)

	t := s.routes.Load()
	i, rest, ok := t.match(string(h.path))
	if !ok {
		br.Discard(n)
		if length > 0 {
			c.SetReadDeadline(deadline(s.opt.IdleTimeout))
			if _, err := br.Discard(int(length)); err != nil {
				return false
			}
		}
		cw.Write(errorAnswer(bufs.out[:0], nethttp.StatusNotFound, "404 page not found", asksClose))
		return cw.Flush() == nil && !asksClose
	}
	r := t.routes[i]
	plainServed.Add(1)
	st := r.Stats
	st.Connections.Add(1)
	st.Active.Add(1)
	defer st.Active.Add(-1)
	bufs.out = h.appendBackendHead(bufs.out[:0], rest, r, ip)
	br.Discard(n)
	if length > 0 {
		// The body is read as the backend takes it.
		c.SetReadDeadline(deadline(s.opt.IdleTimeout))
	}

	bc, res, err := r.be.plainExchange(s.cc.Context(), bufs, br, length, resend)
	if errors.Is(err, errClientBody) {
		return false
	}
	if err != nil {
		st.Errors.Add(1)
		code := nethttp.StatusBadGateway
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			code = nethttp.StatusGatewayTimeout
		}
		s.opt.Log.Debug("http proxy: backend failed", "prefix", r.Prefix, "status", code, "err", err)
		// A body not sent on is still in the connection: it ends.
		closeAfter := asksClose || length > 0
		cw.Write(errorAnswer(bufs.out[:0], code, nethttp.StatusText(code), closeAfter))
		return cw.Flush() == nil && !closeAfter
	}
	st.BytesUp.Add(length)

	noBody := bodyless(head, res.code)
	closeAfter := asksClose ||
		(!noBody && res.length < 0 && !res.chunked) || // to the backend's end of stream
		(!noBody && res.chunked && http10) // no chunks to HTTP/1.0
	bufs.out = res.appendClientHead(bufs.out[:0], http10, noBody, closeAfter)
	_, werr := cw.Write(bufs.out)
	var k int64
	if werr == nil && !noBody {
		if res.length < 0 || res.chunked || int64(bc.br.Buffered()) < res.length {
			err = bc.lift() // read from the socket: no header timeout
		}
		switch {
		case err != nil:
		case res.chunked && !http10:
			k, err = copyChunked(cw, bc.br, cw.Flush)
		case res.chunked:
			if k, err = io.Copy(cw, httputil.NewChunkedReader(bc.br)); err == nil {
				err = skipTrailer(bc.br)
			}
		default: // by its length, or (-1) to the backend's end
			k, err = copyN(cw, bc.br, res.length, cw.Flush)
		}
	}
	st.BytesDown.Add(k)
	if werr == nil {
		werr = cw.Flush()
	}
	if err == nil && werr == nil && !res.closeAfter && (noBody || res.length >= 0 || res.chunked) {
		r.be.put(bc)
	} else {
		bc.Close()
	}
	if err != nil {
		st.Errors.Add(1)
		s.opt.Log.Debug("http proxy: backend answer cut", "prefix", r.Prefix, "err", err)
	}
	return err == nil && werr == nil && !closeAfter
}

// plainExchange writes the request head in bufs.out, and length bytes of
// body from body, to a kept or new connection and reads the answer's
// head, sent again as attempt does when resend allows.
func (b *conns) plainExchange(ctx context.Context, bufs *exchangeBufs, body *bufio.Reader, length int64, resend bool) (*backConn, respHead, error) {
	var res respHead
	c, err := b.attempt(ctx, resend, func(c *backConn) (err error) {
		res, err = b.plainSend(c, bufs, body, length)
		return err
	})
	if err != nil {
		return nil, res, err
	}
	if res.code == nethttp.StatusSwitchingProtocols {
		c.Close()
		return nil, res, errors.New("backend switched protocols unasked")
	}
	return c, res, nil
}

func (b *conns) plainSend(c *backConn, bufs *exchangeBufs, body *bufio.Reader, length int64) (respHead, error) {
	var werr error
	if length > 0 || !c.sr.send(bufs.out) {
		c.bw.Write(bufs.out)
	}
	if length > 0 {
		src := &clientBody{r: body}
		_, werr = io.CopyN(c.bw, src, length)
		if src.err != nil {
			return respHead{}, fmt.Errorf("%w: %w", errClientBody, src.err)
		}
	}
	if werr == nil {
		werr = c.bw.Flush()
	}
	if err := c.header.arm(c.Conn, b.headerTimeout); err != nil {
		return respHead{}, err
	}
	res, err := readResponseHead(c.br, bufs)
	if err != nil {
		if werr != nil {
			return res, werr
		}
		return res, err
	}
	if werr != nil {
		// An answer given before the whole body was taken (413, say)
		// stands, but the connection is not used again.
		res.closeAfter = true
	}
	// The header timeout stays set until the body needs a read (see
	// plain): most answers come whole with their head.
	return res, nil
}

// errClientBody: the client's body broke off before its length; no
// answer is owed to a client that does that.
var errClientBody = errors.New("request body cut short")

// clientBody keeps the error of the client's side of a body copy, told
// apart from the backend's.
type clientBody struct {
	r   io.Reader
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil {
		b.err = err // io.EOF too: short of the length the head gave
	}
	return n, err
}

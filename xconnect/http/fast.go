package http

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	nethttp "net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The plain path: most requests an ingress or a link carries are a head
// and a small body, answered by a head and a body framed by its length or
// by chunks. For these the server reads the head out of the connection's
// buffer without parsing it into maps, writes the backend's request head
// in one piece, and copies the answer's head with its hop-by-hop fields
// dropped and the body as it comes. net/http's server and ReverseProxy
// cost about twice the CPU per request for the same work (header maps,
// a Request and its clone, a background read per request).
//
// Anything else is left to net/http, on the same connection, before a
// byte of the request is consumed: an upgrade, Expect, a chunked or large
// request body, a head with an escaped or unusual path, one larger than
// the connection's buffer, or anything the plain parser does not accept.
// net/http then serves that connection to its end, with its own checks
// and its own 400s.

// clientBuf is each client connection's read buffer, so also the largest
// request head the plain path takes.
const clientBuf = 4 << 10

// maxPlainBody is the largest request body the plain path sends on;
// larger ones stream through net/http's path.
const maxPlainBody = 64 << 10

// maxRespHead bounds an answer's head.
const maxRespHead = 1 << 20

// reqHead is a request head the plain path takes. Its slices point into
// the connection's read buffer and are valid until the head is consumed.
type reqHead struct {
	method, path, query []byte // query with its "?", or empty
	minor               byte   // HTTP/1.minor: '0' or '1'
	host                []byte
	length              int64 // body length, 0 when none
	closeAfter          bool  // the client asked to close after the answer
	te                  bool  // TE: trailers
	idempotent          bool  // an Idempotency-Key (or X-) field: see replayable
	fields              [][]byte
}

// hopFields are passed on in neither direction (RFC 9110 §7.6.1: the
// ones net/http's ReverseProxy drops); ownFields, the ones this proxy
// sets, are not taken from a client.
var (
	hopFields = []string{
		"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade",
	}
	ownFields = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Pv-Client", "X-Pv-Role"}
)

// headEnd is the length of the request head at the start of buf (its
// blank line included), 0 when buf does not hold it whole yet, -1 when
// the head uses bare LF line ends or starts with an empty line: net/http
// takes those.
func headEnd(buf []byte) int {
	at := 0
	for {
		i := bytes.IndexByte(buf[at:], '\n')
		if i < 0 {
			return 0
		}
		if i == 0 || buf[at+i-1] != '\r' {
			return -1
		}
		at += i + 1
		if i == 1 {
			if at == 2 {
				return -1
			}
			return at
		}
	}
}

// parseRequestHead reads a whole head (as headEnd found it); ok is false
// for anything the plain path leaves to net/http.
// Its fields are appended to fields[:0].
func parseRequestHead(head []byte, fields [][]byte) (h reqHead, ok bool) {
	h.fields = fields[:0]
	line, rest, _ := bytes.Cut(head, crlf)
	method, line, ok1 := bytes.Cut(line, sp)
	target, version, ok2 := bytes.Cut(line, sp)
	if !ok1 || !ok2 || !isToken(method) || string(method) == "CONNECT" || string(method) == "PRI" {
		return h, false
	}
	if len(version) != 8 || string(version[:7]) != "HTTP/1." || (version[7] != '0' && version[7] != '1') {
		return h, false
	}
	h.method, h.minor = method, version[7]
	h.path, h.query = target, nil
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		h.path, h.query = target[:i], target[i:]
	}
	if len(h.path) == 0 || h.path[0] != '/' || !plainPath(h.path) || !plainQuery(h.query) {
		return h, false
	}
	h.closeAfter = h.minor == '0'
	var hosts, lengths int
	for len(rest) > 2 {
		var f []byte
		f, rest, _ = bytes.Cut(rest, crlf)
		name, value, found := bytes.Cut(f, colon)
		if !found || !isToken(name) || !plainValue(value) {
			return h, false // obs-fold, a bad name or value: net/http's 400
		}
		value = trimOWS(value)
		switch {
		case fieldIs(name, "Host"):
			hosts++
			h.host = value
		case fieldIs(name, "Content-Length"):
			lengths++
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || n > maxPlainBody || len(value) == 0 || value[0] == '+' {
				return h, false
			}
			h.length = n
		case fieldIs(name, "Transfer-Encoding"), fieldIs(name, "Upgrade"), fieldIs(name, "Expect"):
			return h, false
		case fieldIs(name, "Connection"):
			if len(connection(value, h.minor == '0', &h.closeAfter, nil)) > 0 {
				// It names fields that are hop-by-hop (or asks to
				// upgrade): net/http's path drops them.
				return h, false
			}
		case fieldIs(name, "Te"):
			for tok := range bytes.SplitSeq(value, comma) {
				if fieldIs(trimOWS(tok), "trailers") {
					h.te = true
				}
			}
		case isOneOf(name, idempotencyKeys):
			h.idempotent = true
		}
		if !isOneOf(name, hopFields) && !isOneOf(name, ownFields) {
			h.fields = append(h.fields, f)
		}
	}
	// One plain Host, which the backend gets as it is: net/http's path
	// answers the rest (a 400, or "backend" as the host of a request
	// that named none).
	if hosts != 1 || lengths > 1 || !plainHost(h.host) {
		return h, false
	}
	return h, true
}

// connection reads a Connection field's options: "close" sets
// closeAfter, "keep-alive" clears it on HTTP/1.0; the others, the fields
// it names as hop-by-hop, are appended to others.
func connection(value []byte, http10 bool, closeAfter *bool, others [][]byte) [][]byte {
	for tok := range bytes.SplitSeq(value, comma) {
		tok = trimOWS(tok)
		switch {
		case fieldIs(tok, "close"):
			*closeAfter = true
		case fieldIs(tok, "keep-alive"):
			if http10 {
				*closeAfter = false
			}
		case len(tok) > 0:
			others = append(others, tok)
		}
	}
	return others
}

var (
	crlf  = []byte("\r\n")
	sp    = []byte(" ")
	colon = []byte(":")
	comma = []byte(",")
)

func isOneOf(name []byte, names []string) bool {
	for _, d := range names {
		if fieldIs(name, d) {
			return true
		}
	}
	return false
}

// fieldIs compares a field name (or token) without regard to case.
func fieldIs(b []byte, name string) bool {
	if len(b) != len(name) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		d := name[i]
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// Character classes of the parsers, by byte.
var (
	tokenChar, pathChar, hostChar [256]bool
)

func init() {
	for c := 0x21; c < 0x7f; c++ {
		tokenChar[c] = !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, rune(c))
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		pathChar[c] = alnum || strings.ContainsRune("-._~!$&'()*+,;=:@/", rune(c))
		hostChar[c] = alnum || strings.ContainsRune("-._:[]", rune(c))
	}
}

func isToken(b []byte) bool { return len(b) > 0 && all(b, &tokenChar) }

func all(b []byte, class *[256]bool) bool {
	for _, c := range b {
		if !class[c] {
			return false
		}
	}
	return true
}

// trimOWS drops the spaces and tabs around a field value or list item.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// plainPath: unreserved characters, sub-delimiters, ":", "@" and "/" —
// a path net/http would pass on as it came. A "%" (an escape, which the
// prefix stripping must keep) or anything else goes net/http's way.
func plainPath(b []byte) bool { return all(b, &pathChar) }

// plainHost: a name, an IPv4 or a bracketed IPv6 address, and a port.
func plainHost(b []byte) bool { return len(b) > 0 && all(b, &hostChar) }

// plainQuery: printable ASCII without "#", passed on as it is.
func plainQuery(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// plainValue: a field value of visible ASCII, spaces and tabs.
func plainValue(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// fieldValue: no control character but tab (obs-text allowed), as
// net/http reads an answer's fields.
func fieldValue(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// appendBackendHead is the request head the backend gets: the path with
// the route's prefix stripped, the client's fields without the hop-by-hop
// ones, X-Forwarded-* from this connection, and the link's identity.
func (h *reqHead) appendBackendHead(b []byte, rest string, r *route, clientIP string) []byte {
	b = append(b, h.method...)
	b = append(b, ' ')
	b = append(b, rest...)
	b = append(b, h.query...)
	b = append(b, " HTTP/1.1\r\n"...)
	for _, f := range h.fields {
		b = append(b, f...)
		b = append(b, crlf...)
	}
	if clientIP != "" {
		b = append(b, "X-Forwarded-For: "...)
		b = append(b, clientIP...)
		b = append(b, crlf...)
	}
	b = append(b, "X-Forwarded-Host: "...)
	b = append(b, h.host...)
	b = append(b, "\r\nX-Forwarded-Proto: http\r\n"...)
	if r.Client != "" {
		b = append(b, "X-Pv-Client: "...)
		b = append(b, r.Client...)
		b = append(b, "\r\nX-Pv-Role: "...)
		b = append(b, r.Role...)
		b = append(b, crlf...)
	}
	if h.te {
		b = append(b, "Te: trailers\r\n"...)
	}
	return append(b, crlf...)
}

// respHead is an answer's head as read from a backend: its lines are in
// the scratch buffer it was read into.
type respHead struct {
	code       int
	status     []byte   // the status line, without its line end
	fields     [][]byte // the fields passed on
	length     int64    // -1: not given
	chunked    bool
	closeAfter bool // the backend closes after this answer
}

var errRespHead = errors.New("malformed answer head from the backend")

// readResponseHead reads an answer's head from br into bufs (scratch,
// lines, fields), interim 1xx answers skipped; the head's slices point
// into bufs.scratch.
func readResponseHead(br *bufio.Reader, bufs *exchangeBufs) (h respHead, err error) {
	for {
		bufs.scratch, bufs.starts = bufs.scratch[:0], bufs.starts[:0]
		for {
			at := len(bufs.scratch)
			for { // a line longer than br's buffer comes in pieces
				frag, err := br.ReadSlice('\n')
				if len(bufs.scratch)+len(frag) > maxRespHead {
					return h, errRespHead
				}
				bufs.scratch = append(bufs.scratch, frag...)
				if err == nil {
					break
				}
				if !errors.Is(err, bufio.ErrBufferFull) {
					return h, err
				}
			}
			line := trimEOL(bufs.scratch[at:])
			bufs.scratch = bufs.scratch[:at+len(line)]
			if len(line) == 0 {
				break
			}
			bufs.starts = append(bufs.starts, at)
		}
		if len(bufs.starts) == 0 {
			return h, errRespHead
		}
		bufs.lines = bufs.lines[:0]
		for i, at := range bufs.starts {
			end := len(bufs.scratch)
			if i+1 < len(bufs.starts) {
				end = bufs.starts[i+1]
			}
			bufs.lines = append(bufs.lines, bufs.scratch[at:end])
		}
		h, err = parseResponseHead(bufs.lines, bufs.respFields)
		bufs.respFields = h.fields
		if err != nil || h.code >= 200 || h.code == 101 {
			return h, err
		}
	}
}

// trimEOL drops a line's end, CRLF or LF.
func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// parseResponseHead reads an answer's status line and fields; the ones
// passed on are appended to fields[:0].
func parseResponseHead(lines [][]byte, fields [][]byte) (h respHead, err error) {
	h.fields = fields[:0]
	st := lines[0]
	if len(st) < 12 || string(st[:7]) != "HTTP/1." || (st[7] != '0' && st[7] != '1') || st[8] != ' ' ||
		(len(st) > 12 && st[12] != ' ') {
		return h, errRespHead
	}
	code, err := strconv.Atoi(string(st[9:12]))
	if err != nil || code < 100 {
		return h, errRespHead
	}
	h.code, h.status, h.length = code, st, -1
	h.closeAfter = st[7] == '0'
	var hops [][]byte
	for _, f := range lines[1:] {
		name, value, found := bytes.Cut(f, colon)
		if !found || !isToken(name) || !fieldValue(value) {
			return h, errRespHead
		}
		value = trimOWS(value)
		switch {
		case fieldIs(name, "Content-Length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (h.length >= 0 && h.length != n) {
				return h, errRespHead
			}
			h.length = n
			continue // written again below, once
		case fieldIs(name, "Transfer-Encoding"):
			if !fieldIs(value, "chunked") {
				return h, errRespHead
			}
			h.chunked = true
		case fieldIs(name, "Connection"):
			hops = connection(value, st[7] == '0', &h.closeAfter, hops)
		}
		if fieldIs(name, "Trailer") || !isOneOf(name, hopFields) {
			h.fields = append(h.fields, f)
		}
	}
	if h.chunked {
		h.length = -1
	}
	if len(hops) > 0 {
		kept := h.fields[:0]
		for _, f := range h.fields {
			name, _, _ := bytes.Cut(f, colon)
			named := false
			for _, hop := range hops {
				named = named || fieldIs(name, string(hop))
			}
			if !named {
				kept = append(kept, f)
			}
		}
		h.fields = kept
	}
	return h, nil
}

// bodyless: the answer (to a HEAD request when head) has no body whatever
// its fields say.
func bodyless(head bool, code int) bool {
	return head || code < 200 || code == 204 || code == 304
}

// appendClientHead is the answer's head as the client gets it, framed for
// it: the length or chunks as the backend sent them (chunks only to an
// HTTP/1.1 client), and Connection as this connection goes on.
func (h *respHead) appendClientHead(b []byte, http10, noBody, closeAfter bool) []byte {
	b = append(b, "HTTP/1.1"...)
	b = append(b, h.status[8:]...)
	b = append(b, crlf...)
	for _, f := range h.fields {
		b = append(b, f...)
		b = append(b, crlf...)
	}
	if h.length >= 0 {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, h.length, 10)
		b = append(b, crlf...)
	}
	if h.chunked && !http10 && !noBody {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	switch {
	case closeAfter:
		b = append(b, "Connection: close\r\n"...)
	case http10:
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	return append(b, crlf...)
}

// errorAnswer is the answer net/http's Error (or NotFound) gives, with
// Connection: close when the connection ends after it.
func errorAnswer(b []byte, code int, body string, closeAfter bool) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, nethttp.StatusText(code)...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)+1), 10)
	if closeAfter {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	return append(b, '\n')
}

// copyChunked copies a chunked body from br to w as it is, to the end of
// its trailer section, and returns the payload bytes; flush is called
// whenever br has nothing more buffered, before it waits.
func copyChunked(w io.Writer, br *bufio.Reader, flush func() error) (int64, error) {
	var n int64
	line := func() ([]byte, error) {
		if br.Buffered() == 0 {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		l, err := crlfLine(br)
		if err != nil {
			return nil, err
		}
		_, err = w.Write(l)
		return l, err
	}
	for {
		l, err := line()
		if err != nil {
			return n, err
		}
		hex := l[:len(l)-2]
		if i := bytes.IndexByte(hex, ';'); i >= 0 {
			hex = hex[:i]
		}
		hex = trimOWS(hex)
		size, err := strconv.ParseUint(string(hex), 16, 63)
		if err != nil || len(hex) == 0 || len(hex) > 15 {
			return n, errRespHead
		}
		if size == 0 {
			for { // the trailer section, to its blank line
				l, err := line()
				if err != nil {
					return n, err
				}
				if len(l) == 2 {
					return n, nil
				}
			}
		}
		k, err := copyN(w, br, int64(size), flush)
		n += k
		if err != nil {
			return n, err
		}
		if l, err := line(); err != nil {
			return n, err
		} else if len(l) != 2 {
			return n, errRespHead
		}
	}
}

// skipTrailer reads a chunked body's trailer section to its blank line,
// after httputil's chunked reader, which stops at the last chunk's size
// line: left in a kept connection, the rest would be read as the head of
// its next answer.
func skipTrailer(br *bufio.Reader) error {
	for {
		l, err := crlfLine(br)
		if err != nil || len(l) == 2 {
			return err
		}
	}
}

// crlfLine reads one line of a chunked body's framing, CRLF included; a
// line too long for br, or cut by the end, is io.ErrUnexpectedEOF.
func crlfLine(br *bufio.Reader) ([]byte, error) {
	l, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(l) < 2 || l[len(l)-2] != '\r' {
		return nil, errRespHead
	}
	return l, nil
}

// copyN copies n bytes from br to w out of br's own buffer, or (n < 0)
// everything to the backend's end of stream, calling flush before each
// wait for more. An end before n bytes is io.ErrUnexpectedEOF.
func copyN(w io.Writer, br *bufio.Reader, n int64, flush func() error) (int64, error) {
	var done int64
	for n < 0 || done < n {
		if br.Buffered() == 0 {
			if err := flush(); err != nil {
				return done, err
			}
			if _, err := br.Peek(1); err != nil {
				if errors.Is(err, io.EOF) {
					if n < 0 {
						return done, nil
					}
					err = io.ErrUnexpectedEOF
				}
				return done, err
			}
		}
		take := int64(br.Buffered())
		if n >= 0 {
			take = min(take, n-done)
		}
		p, _ := br.Peek(int(take))
		k, err := w.Write(p)
		br.Discard(k)
		done += int64(k)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// handoffConn is a client connection given to net/http: what the plain
// path buffered is read first, and done is closed when net/http closes it.
type handoffConn struct {
	net.Conn
	br   *bufio.Reader
	once sync.Once
	done chan struct{}

	sendTimeout time.Duration
	wmu         sync.Mutex // net/http and a hijacker may both write
	dl          standingDeadline
	// reset: the write deadline was set by another (net/http clears it
	// after every answer, and at a hijack), so the next Write sets it
	// again instead of letting a recent one stand.
	reset atomic.Bool
}

// Write bounds each write's wait for the client by the send timeout, as
// the plain path does: net/http's own WriteTimeout would bound a whole
// answer, which a stream or a WebSocket outlives.
func (c *handoffConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.reset.Swap(false) {
		c.dl.lost()
	}
	if err := c.dl.arm(c.Conn, c.sendTimeout); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// SetDeadline and SetWriteDeadline do not wait for a Write under way
// (one may be what they are meant to end).
func (c *handoffConn) SetDeadline(t time.Time) error {
	err := c.Conn.SetDeadline(t)
	c.reset.Store(true)
	return err
}

func (c *handoffConn) SetWriteDeadline(t time.Time) error {
	err := c.Conn.SetWriteDeadline(t)
	c.reset.Store(true)
	return err
}

func (c *handoffConn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil
	}
	return c.Conn.Read(p)
}

func (c *handoffConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}

// connQueue is the listener net/http serves the handed-off connections
// from.
type connQueue struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func newConnQueue() *connQueue {
	return &connQueue{conns: make(chan net.Conn), closed: make(chan struct{}), addr: &net.TCPAddr{}}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error   { q.once.Do(func() { close(q.closed) }); return nil }
func (q *connQueue) Addr() net.Addr { return q.addr }

// bufPool holds the buffers of an exchange: the head written to the
// backend, the answer's head read, the head and body written to the
// client. A connection holds none while idle.
var bufPool = sync.Pool{New: func() any { return newExchangeBufs() }}

func newExchangeBufs() *exchangeBufs {
	return &exchangeBufs{out: make([]byte, 0, 1024), scratch: make([]byte, 0, 1024)}
}

// putBufs gives bufs back to the pool, unless a large head grew them: the
// pool keeps small ones only.
func putBufs(bufs *exchangeBufs) {
	clear(bufs.reqFields[:cap(bufs.reqFields)]) // no slice of a connection's buffer kept
	if cap(bufs.out) > 64<<10 || cap(bufs.scratch) > 64<<10 {
		return
	}
	bufPool.Put(bufs)
}

type exchangeBufs struct {
	out, scratch []byte
	starts       []int
	lines        [][]byte
	reqFields    [][]byte
	respFields   [][]byte
	cw           *bufio.Writer
}

// clientIP is the address X-Forwarded-For names, "" when c is not an IP
// connection (net/http's ReverseProxy then sends none).
func clientIP(c net.Conn) string {
	a := c.RemoteAddr()
	if a == nil {
		return "" // an unnamed unix socket's peer
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return ""
	}
	return host
}

// deadline of a wait of d from now.
func deadline(d time.Duration) time.Time { return time.Now().Add(d) }

package ctrl

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strconv"
)

// Upstream's pvcontrol uploads objects with curl and a header
// "Transfer-Encoding: identity" beside the Content-Length (its put_object).
// RFC 7230 dropped "identity" and net/http answers any transfer coding but
// chunked with 501 before a handler runs, so `pvcontrol objects put` and
// `pvcontrol steps install` would fail against us while upstream's server
// takes them. teListener hands the server connections that drop exactly
// that header line from each request head; the Content-Length then frames
// the body as upstream reads it. Everything else goes through unchanged.

// maxHead is the longest request head teConn rewrites: the server's
// MaxHeaderBytes and the slack net/http allows beyond it. A longer head is
// passed through for net/http to refuse.
const maxHead = 64<<10 + 4096

// teListener wraps the connections of a listener in teConn.
type teListener struct{ net.Listener }

func (l teListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &teConn{Conn: c, r: bufio.NewReader(c)}, nil
}

// teConn is a connection whose request heads are rewritten as above. It
// follows the requests' framing to find each head: a head is read whole,
// then its Content-Length bytes of body pass through. After a chunked
// body, or a head it cannot frame, the rest of the connection passes
// through unchanged.
type teConn struct {
	net.Conn
	r       *bufio.Reader
	head    []byte // the head read so far
	line    int    // where the current line of head starts
	pending []byte // rewritten head not yet returned
	body    int64  // body bytes still to pass through
	through bool   // pass everything through from here on
	err     error  // read error to return once pending is out
}

// NetConn is the connection underneath, for its peer credentials.
func (c *teConn) NetConn() net.Conn { return c.Conn }

func (c *teConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if c.through || c.body > 0 {
			if !c.through && int64(len(p)) > c.body {
				p = p[:c.body]
			}
			n, err := c.r.Read(p)
			if !c.through {
				c.body -= int64(n)
			}
			return n, err
		}
		if err := c.readHead(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// readHead reads up to the blank line that ends a request head and
// queues it, rewritten, in pending. A timeout keeps what was read for the
// next call (net/http aborts its background reads with a deadline); any
// other error queues what was read, unchanged, before the error.
func (c *teConn) readHead() error {
	for {
		chunk, err := c.r.ReadSlice('\n')
		c.head = append(c.head, chunk...)
		switch {
		case err == nil:
			// Compared as bytes: a string of each line would cost an
			// allocation per header line on every request.
			l := c.head[c.line:]
			c.line = len(c.head)
			if len(l) <= 2 && (l[0] == '\n' || l[0] == '\r' && len(l) == 2) {
				c.pending = c.rewrite(c.head)
				c.head, c.line = c.head[:0], 0
				return nil
			}
		case errors.Is(err, bufio.ErrBufferFull):
		default:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && len(c.head) < maxHead {
				return err
			}
			c.pending, c.err, c.through = c.head, err, true
			c.head = nil
			if len(c.pending) == 0 {
				return err
			}
			return nil
		}
		if len(c.head) > maxHead {
			c.pending, c.through = c.head, true
			c.head = nil
			return nil
		}
	}
}

// rewrite drops the "Transfer-Encoding: identity" lines of head and sets
// how much body follows it. A head with nothing to drop, nearly every one,
// is returned as it is rather than copied: readHead reuses its buffer only
// once pending is out.
func (c *teConn) rewrite(head []byte) []byte {
	var out []byte // nil until a line is dropped
	length := int64(-1)
	for i, rest := 0, head; len(rest) > 0; i++ {
		end := bytes.IndexByte(rest, '\n') + 1
		line := rest[:end]
		rest = rest[end:]
		name, value, ok := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case i == 0 || !ok:
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			if bytes.EqualFold(value, []byte("identity")) {
				if out == nil {
					out = append(make([]byte, 0, len(head)), head[:len(head)-len(rest)-len(line)]...)
				}
				continue
			}
			c.through = true // chunked or refused: no framing to follow
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || length >= 0 && n != length {
				c.through = true // net/http refuses it
			}
			length = n
		}
		if out != nil {
			out = append(out, line...)
		}
	}
	if length > 0 && !c.through {
		c.body = length
	}
	if out == nil {
		return head
	}
	return out
}

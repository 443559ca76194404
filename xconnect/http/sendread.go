package http

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/xconnect"
)

// sendRead is what a backend connection's answers are read from. A
// request without a body is not written on its own: it is left in out,
// and the first read of its answer writes it inside that read's wait, so
// that the read does not first find the socket empty, as it always would
// with the request just sent. Go's poller reads before it waits (it
// forgets, when a read starts, whether the socket became readable
// before); a read that only fails with EAGAIN is one of the few system
// calls the proxy makes per request, and on a small device each costs
// about as much as a request's own work in user space.
//
// Waiting without that read is safe only because nothing of the answer
// can arrive before the request is written, and the write is made after
// the read started: what arrives after it wakes the wait. Bytes a backend
// sent unasked, before the request, would not: the answer after them
// still does. A backend that closed the idle connection before the request
// was written answers the write with a reset, which wakes the wait too;
// one that only shut its side down and still reads (no HTTP server does)
// leaves the wait to the header timeout.
type sendRead struct {
	conn net.Conn
	rc   syscall.RawConn // nil: conn is read as is
	out  []byte          // written by the next Read, before it reads

	// headLeft bounds what Read takes while limited (an answer's head
	// on net/http's path, see limitHead).
	limited  bool
	headLeft int

	// The state of one Read's callback, kept here with the callback bound
	// once, so that a read allocates nothing.
	p    []byte
	n    int
	err  error
	call func(fd uintptr) bool
}

func newSendRead(conn net.Conn) *sendRead {
	s := &sendRead{conn: conn}
	if sc, ok := conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			s.rc = rc
			s.call = s.ready
		}
	}
	return s
}

// send leaves b to be written by the next Read, and reports whether it
// will be: when it cannot (no raw access), the caller writes b itself.
// b must not change until that Read.
func (s *sendRead) send(b []byte) bool {
	if s.rc == nil {
		return false
	}
	s.out = b
	return true
}

// errHeadTooLarge ends the reading of an answer whose head does not end
// within maxRespHead.
var errHeadTooLarge = errors.New("backend's answer head too large")

// limitHead bounds what Read takes to n bytes (a head and what the
// reader buffers after it), until unlimitHead: net/http's ReadResponse
// reads a head to its end however long it is, and a backend whose head
// does not end (a provider container, hostile or broken) would grow the
// supervisor's memory as fast as it writes, for the whole header
// timeout.
func (s *sendRead) limitHead(n int) { s.limited, s.headLeft = true, n }

func (s *sendRead) unlimitHead() { s.limited = false }

func (s *sendRead) Read(p []byte) (int, error) {
	if !s.limited {
		return s.read(p)
	}
	if s.headLeft <= 0 {
		return 0, errHeadTooLarge
	}
	if len(p) > s.headLeft {
		p = p[:s.headLeft]
	}
	n, err := s.read(p)
	s.headLeft -= n
	return n, err
}

func (s *sendRead) read(p []byte) (int, error) {
	if s.rc == nil {
		return s.conn.Read(p)
	}
	s.p, s.n, s.err = p, 0, nil
	err := s.rc.Read(s.call)
	n, rerr := s.n, s.err
	s.p, s.err = nil, nil
	switch {
	case err != nil:
		s.out = nil
		return 0, err // closed, or the deadline passed
	case rerr != nil:
		return 0, rerr
	case len(s.out) > 0:
		// The socket was full: the rest is written with the poller's
		// wait, then the answer read.
		out := s.out
		s.out = nil
		if _, err := s.conn.Write(out); err != nil {
			return 0, err
		}
		return s.read(p)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// ready is called by the poller with the socket, first at once, then each
// time it may have become readable; it reports whether Read is done.
func (s *sendRead) ready(fd uintptr) bool {
	if len(s.out) > 0 {
		k, err := xconnect.RawWrite(int(fd), s.out)
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			s.out, s.err = nil, os.NewSyscallError("write", err)
			return true
		}
		s.out = s.out[max(k, 0):]
		// All written: wait for the answer.
		return len(s.out) > 0
	}
	var err error
	s.n, err = xconnect.RawRead(int(fd), s.p)
	if errors.Is(err, unix.EAGAIN) {
		return false
	}
	if err != nil {
		s.n, s.err = 0, os.NewSyscallError("read", err)
	}
	return true
}

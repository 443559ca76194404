package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// sockConn is one connection to pv-ctrl on a blocking unix socket, bound
// by a deadline that every read, write and the connect itself respect.
//
// It is not a net.Conn on purpose. Go's net package would make the socket
// non-blocking and wait in its netpoller: an epoll set, an event fd, and
// a park and wake of the goroutine around every read that comes before
// the answer, for the one request pvcontrol sends per run. A blocking
// socket costs the system calls that move the bytes and a setsockopt per
// call for the deadline, and net (with net/textproto) is not linked or
// initialised at all: 0.3 ms of an 11 ms `pvcontrol ls` in 60 alternated
// runs, 0.5 MB of the binary.
type sockConn struct {
	fd       int
	deadline time.Time
	// rcv and snd are the SO_RCVTIMEO and SO_SNDTIMEO last set, so that
	// a call whose remaining time rounds to the same value sets nothing.
	rcv, snd time.Duration
}

// errTimeout is what a call past the deadline returns.
var errTimeout = fmt.Errorf("timed out: %w", os.ErrDeadlineExceeded)

// dialSocket connects to the unix socket sock within connectTimeout (and
// the deadline). A blocking connect waits while the socket's listen
// backlog is full, as curl's --connect-timeout does: a burst of
// connections from elsewhere (a container opening them without end) fills
// it for a moment while the server catches up, and the host's pvcontrol
// must not fail for it.
func dialSocket(sock string, deadline time.Time) (*sockConn, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dial unix %s: %w", sock, os.NewSyscallError("socket", err))
	}
	c := &sockConn{fd: fd, deadline: deadline}
	start := time.Now()
	connectBy := start.Add(connectTimeout)
	if deadline.Before(connectBy) {
		connectBy = deadline
	}
	for {
		if err = c.setTimeout(unix.SO_SNDTIMEO, &c.snd, connectBy); err != nil {
			break
		}
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: sock})
		if err != unix.EINTR { // a signal: go on waiting
			break
		}
	}
	switch {
	case err == unix.EAGAIN:
		// A blocking connect reports its timeout so.
		err = fmt.Errorf("the socket's backlog stayed full for %v: %w", connectBy.Sub(start).Round(time.Millisecond), errTimeout)
	case err != nil && !errors.Is(err, errTimeout):
		err = os.NewSyscallError("connect", err)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("dial unix %s: %w", sock, err)
	}
	return c, nil
}

// setTimeout sets the socket option opt (SO_RCVTIMEO or SO_SNDTIMEO) to
// the time left until by, unless it already is that; *cur is the value it
// has. A timeout of zero would mean none, so a call past by fails here.
func (c *sockConn) setTimeout(opt int, cur *time.Duration, by time.Time) error {
	left := time.Until(by)
	if left <= 0 {
		return errTimeout
	}
	// Whole milliseconds: the kernel keeps jiffies anyway, and rounding up
	// lets consecutive calls within a millisecond share one setsockopt.
	left = (left + time.Millisecond - 1).Truncate(time.Millisecond)
	if left == *cur {
		return nil
	}
	tv := unix.NsecToTimeval(left.Nanoseconds())
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, opt, &tv); err != nil {
		return os.NewSyscallError("setsockopt", err)
	}
	*cur = left
	return nil
}

// Read reads what the server sent, waiting at most until the deadline.
func (c *sockConn) Read(p []byte) (int, error) {
	for {
		if err := c.setTimeout(unix.SO_RCVTIMEO, &c.rcv, c.deadline); err != nil {
			return 0, err
		}
		n, err := unix.Read(c.fd, p)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, errTimeout
		case err != nil:
			return 0, os.NewSyscallError("read", err)
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// Write writes all of p by the deadline. MSG_NOSIGNAL: a server that
// closed early (413 at a body limit) is an error to report, not a SIGPIPE.
func (c *sockConn) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		if err := c.setTimeout(unix.SO_SNDTIMEO, &c.snd, c.deadline); err != nil {
			return done, err
		}
		n, err := unix.SendmsgN(c.fd, p[done:], nil, nil, unix.MSG_NOSIGNAL)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return done + max(n, 0), errTimeout
		case err != nil:
			return done + max(n, 0), os.NewSyscallError("write", err)
		}
		done += n
	}
	return done, nil
}

// Close closes the socket.
func (c *sockConn) Close() error { return unix.Close(c.fd) }

// Package acceptretry keeps a net/http server accepting through the
// failures of accept(2) that pass: the kernel short of memory or socket
// buffers (ENOMEM, ENOBUFS), the descriptor table full. net/http's
// Server.Serve waits and tries again only after the errors it calls
// temporary (EMFILE, ENFILE, EINTR, EAGAIN) and returns at the first
// other one: the socket would then go unanswered until the process
// started again, on a device until its next boot.
package acceptretry

import (
	"errors"
	"net"
)

// Listener is l with every Accept error other than its close reported
// as temporary, so that net/http's Server waits (5 ms, doubling up to
// 1 s) and accepts again instead of ending Serve. A close still ends
// Serve: its error is passed on as it is.
func Listener(l net.Listener) net.Listener { return listener{l} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return nil, temporary{err}
	}
	return c, err
}

// temporary is an accept error to wait out.
type temporary struct{ err error }

func (e temporary) Error() string   { return e.err.Error() }
func (e temporary) Unwrap() error   { return e.err }
func (e temporary) Timeout() bool   { return false }
func (e temporary) Temporary() bool { return true }

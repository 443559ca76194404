package ctrl

import (
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// failingListener fails every Accept with err while failing is set, as
// accept(2) does while the process or the kernel is short of something,
// and counts those calls.
type failingListener struct {
	net.Listener
	err     error
	failing atomic.Bool
	calls   atomic.Int64
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.failing.Load() {
		l.calls.Add(1)
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", l.err)}
	}
	return l.Listener.Accept()
}

// TestAcceptErrorsDoNotEndTheSocket: while accept(2) fails (the kernel out
// of memory or socket buffers, the descriptor table full), the control
// socket waits and tries again, without spinning; once accept works again
// it serves. Returning instead would leave the device without its control
// socket (no update, no pvcontrol) until the next boot.
func TestAcceptErrorsDoNotEndTheSocket(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOMEM, syscall.ENOBUFS, syscall.EMFILE} {
		t.Run(errno.Error(), func(t *testing.T) {
			s := New(newFakeBackend(), fixedResolver("", nil), slog.New(slog.NewTextHandler(io.Discard, nil)))
			sock := socketPath(t)
			raw, err := Listen(sock)
			if err != nil {
				t.Fatal(err)
			}
			l := &failingListener{Listener: raw, err: errno}
			l.failing.Store(true)
			served := make(chan error, 1)
			go func() { served <- s.Serve(l) }()
			defer s.Close()
			time.Sleep(500 * time.Millisecond)
			l.failing.Store(false)
			calls := l.calls.Load()
			select {
			case err := <-served:
				t.Fatalf("Serve returned after %d failed accepts: %v", calls, err)
			default:
			}
			// A retry at once would be millions of calls in that time.
			if calls > 50 {
				t.Errorf("%d accepts in 500 ms of failures: spinning", calls)
			}
			if calls == 0 {
				t.Fatal("no accept was tried")
			}
			if status, body, _ := rawRequest(t, sock, "GET /containers HTTP/1.1\r\nHost: localhost\r\n\r\n"); status != "200 OK" {
				t.Fatalf("after the failures: %q %s", status, body)
			}
		})
	}
}

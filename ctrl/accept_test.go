package ctrl

import (
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/nstest"
)

// TestAcceptErrorsDoNotEndTheSocket: while accept(2) fails (the kernel out
// of memory or socket buffers, the descriptor table full, or, ENOSPC, the
// epoll watches root shares with root containers all taken, which Go's
// poller meets registering the accepted socket), the control
// socket waits and tries again, without spinning; once accept works again
// it serves. Returning instead would leave the device without its control
// socket (no update, no pvcontrol) until the next boot.
func TestAcceptErrorsDoNotEndTheSocket(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOMEM, syscall.ENOBUFS, syscall.EMFILE, syscall.ENOSPC} {
		t.Run(errno.Error(), func(t *testing.T) {
			s := New(newFakeBackend(), fixedResolver("", nil), slog.New(slog.NewTextHandler(io.Discard, nil)))
			sock := socketPath(t)
			raw, err := Listen(sock)
			if err != nil {
				t.Fatal(err)
			}
			l := &nstest.FailingListener{Listener: raw, Err: errno}
			l.Failing.Store(true)
			served := make(chan error, 1)
			go func() { served <- s.Serve(l) }()
			defer s.Close()
			time.Sleep(500 * time.Millisecond)
			l.Failing.Store(false)
			calls := l.Calls.Load()
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

package rest

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/nstest"
)

// TestAcceptErrorsDoNotEndTheLink: while accept(2) fails, the link waits
// and tries again without spinning, and serves the consumer once accept
// works again. A proxy that returned stayed "established" in GET /actors
// and served nothing until the consumer or the provider restarted.
func TestAcceptErrorsDoNotEndTheLink(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOMEM, syscall.ENOBUFS, syscall.ENOSPC} {
		t.Run(errno.Error(), func(t *testing.T) {
			prov := filepath.Join(t.TempDir(), "prov.sock")
			startProvider(t, prov)
			p := newLink(prov, nil)
			cons := filepath.Join(t.TempDir(), "api.sock")
			raw, err := net.Listen("unix", cons)
			if err != nil {
				t.Fatal(err)
			}
			l := &nstest.FailingListener{Listener: raw, Err: errno}
			l.Failing.Store(true)
			served, done := make(chan error, 1), make(chan struct{})
			go func() {
				defer close(done)
				served <- p.Serve(l)
			}()
			defer func() {
				p.Close()
				<-done
			}()
			time.Sleep(500 * time.Millisecond)
			l.Failing.Store(false)
			calls := l.Calls.Load()
			select {
			case err := <-served:
				t.Fatalf("Serve returned after %d failed accepts: %v", calls, err)
			default:
			}
			if calls == 0 || calls > 50 {
				t.Errorf("%d accepts in 500 ms of failures (a retry at once spins)", calls)
			}
			c, err := net.Dial("unix", cons)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "GET /a HTTP/1.1\r\nHost: api\r\n\r\n")
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("after the failures: %v", err)
			}
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("after the failures: %s", res.Status)
			}
		})
	}
}

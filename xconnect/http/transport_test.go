package http

import (
	"bufio"
	"io"
	"net"
	nethttp "net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pantavisor/pv/xconnect"
)

// rawBackend answers each connection's first request with body and then
// closes it after linger, without announcing the close: a kept-alive
// connection as a backend drops it when idle. It counts connections.
func rawBackend(t *testing.T, body string, linger time.Duration) (xconnect.Dialer, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
				time.Sleep(linger)
			}()
		}
	}()
	return xconnect.TCPDialer(ln.Addr().String()), &accepted
}

// A kept connection the backend closed while it was idle is not the
// client's failure: the request (with no body) goes again on a new one.
func TestStaleKeptConnectionRetried(t *testing.T) {
	dial, accepted := rawBackend(t, "fresh", 0)
	st := &xconnect.Stats{}
	base := serve(t, Options{}, Route{Prefix: "/", Dial: dial, Stats: st})
	for i := range 5 {
		resp, body := get(t, base+"/")
		if resp.StatusCode != 200 || body != "fresh" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond) // the backend's close arrives
	}
	if st.Errors.Load() != 0 {
		t.Errorf("%d errors", st.Errors.Load())
	}
	if n := accepted.Load(); n != 5 {
		t.Errorf("%d backend connections for 5 requests, each closed after its answer", n)
	}
}

// Connections to a backend are kept alive: sequential requests share one.
func TestBackendConnectionsKept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	srv := &nethttp.Server{Handler: nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.WriteString(w, "kept")
	}), ConnState: func(_ net.Conn, s nethttp.ConnState) {
		if s == nethttp.StateNew {
			conns.Add(1)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	base := serve(t, Options{}, Route{Prefix: "/", Dial: xconnect.TCPDialer(ln.Addr().String())})
	for i := range 50 {
		if resp, body := get(t, base+"/x"); resp.StatusCode != 200 || body != "kept" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d backend connections for 50 sequential requests, want 1", n)
	}
}

package http

import (
	"bufio"
	"io"
	"net"
	nethttp "net/http"
	"strconv"
	"strings"
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

// burstBackend is a backend whose answers to /burst wait until release is
// closed, each request first announced on arrived; it counts the
// connections opened and closed. roundTrip sends a GET through b and
// reads its answer, which gives the connection back.
type burstBackend struct {
	addr           string
	arrived        chan struct{}
	release        chan struct{}
	opened, closed atomic.Int64
}

func newBurstBackend(t *testing.T, burst int) *burstBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bb := &burstBackend{addr: ln.Addr().String(), arrived: make(chan struct{}, burst), release: make(chan struct{})}
	srv := &nethttp.Server{Handler: nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path == "/burst" {
			bb.arrived <- struct{}{}
			<-bb.release
		}
		io.WriteString(w, "ok")
	}), ConnState: func(_ net.Conn, s nethttp.ConnState) {
		switch s {
		case nethttp.StateNew:
			bb.opened.Add(1)
		case nethttp.StateClosed:
			bb.closed.Add(1)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return bb
}

func roundTrip(b *conns, path string) error {
	req, err := nethttp.NewRequest("GET", "http://backend"+path, nil)
	if err != nil {
		return err
	}
	res, err := b.RoundTrip(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return err
}

// burst sends n requests to /burst at once, each on a connection of its
// own, and lets them all end.
func (bb *burstBackend) burst(t *testing.T, b *conns, n int) {
	t.Helper()
	errc := make(chan error, n)
	for range n {
		go func() { errc <- roundTrip(b, "/burst") }()
	}
	for range n {
		<-bb.arrived
	}
	close(bb.release)
	for range n {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// Connections a burst opened are closed once they have been idle for
// idleFor, not kept (half-closed when the backend gives up on them) while
// later requests only ever take the newest one.
func TestIdleBackendConnectionsClosed(t *testing.T) {
	const burst = 3
	bb := newBurstBackend(t, burst)
	opened, closed := &bb.opened, &bb.closed
	b := &conns{dial: xconnect.TCPDialer(bb.addr), headerTimeout: 5 * time.Second, idleFor: 300 * time.Millisecond}
	t.Cleanup(b.close)
	bb.burst(t, b, burst)
	// A trickle of requests takes the newest connection each time; the
	// other two are left idle and must go after idleFor.
	deadline := time.Now().Add(3 * time.Second)
	for closed.Load() < burst-1 && time.Now().Before(deadline) {
		if err := roundTrip(b, "/trickle"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := closed.Load(); n < burst-1 {
		t.Fatalf("%d of the %d connections left idle were closed after idleFor", n, burst-1)
	}
	if n := opened.Load(); n != burst {
		t.Errorf("%d backend connections opened, want %d: the trickle's one must stay kept", n, burst)
	}
	// Once no request comes at all, the last one goes too.
	for closed.Load() < burst && time.Now().Before(deadline.Add(time.Second)) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := closed.Load(); n != burst {
		t.Errorf("%d of %d idle connections closed with no request coming", n, burst)
	}
	b.mu.Lock()
	kept, sweep := len(b.idle), b.sweep
	b.mu.Unlock()
	if kept != 0 || sweep != nil {
		t.Errorf("%d connections kept and sweep %v after all expired", kept, sweep)
	}
}

// A request is sent again on another connection only when sending it
// twice is harmless and the kept connection it failed on was closed: not
// a POST (the backend may have acted on it before it dropped the
// connection), and not after the header timeout (the backend has it, and
// the client would wait twice as long). Both ways to the backend: the
// plain path and net/http's (a Connection field naming another takes
// that one).
func TestOnlyReplayableRequestsSentAgain(t *testing.T) {
	for _, tc := range []struct {
		name, second string
		hang         bool  // the backend holds the second request, else drops its connection
		want         int   // the client's status for it
		times        int32 // how often the backend gets it (0: once)
	}{
		{"POST dropped", "POST /two HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n", false, nethttp.StatusBadGateway, 0},
		{"POST dropped, net/http's path", "POST /two HTTP/1.1\r\nHost: d\r\nConnection: x-hop\r\nContent-Length: 0\r\n\r\n", false, nethttp.StatusBadGateway, 0},
		{"POST with an Idempotency-Key dropped, sent again", "POST /two HTTP/1.1\r\nHost: d\r\nIdempotency-Key: k1\r\nContent-Length: 0\r\n\r\n", false, nethttp.StatusBadGateway, 2},
		{"DELETE with an X-Idempotency-Key dropped, sent again, net/http's path", "DELETE /two HTTP/1.1\r\nHost: d\r\nConnection: x-hop\r\nX-Idempotency-Key: k2\r\n\r\n", false, nethttp.StatusBadGateway, 2},
		{"DELETE with an empty Idempotency-Key dropped, sent again", "DELETE /two HTTP/1.1\r\nHost: d\r\nIdempotency-Key:\r\n\r\n", false, nethttp.StatusBadGateway, 2},
		{"DELETE with an empty Idempotency-Key dropped, sent again, net/http's path", "DELETE /two HTTP/1.1\r\nHost: d\r\nConnection: x-hop\r\nIdempotency-Key:\r\n\r\n", false, nethttp.StatusBadGateway, 2},
		{"GET timed out", "GET /two HTTP/1.1\r\nHost: d\r\n\r\n", true, nethttp.StatusGatewayTimeout, 0},
		{"GET timed out, net/http's path", "GET /two HTTP/1.1\r\nHost: d\r\nConnection: x-hop\r\n\r\n", true, nethttp.StatusGatewayTimeout, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seconds atomic.Int32 // how often the backend got the second request
			dial := eachRequest(t, func(c net.Conn, br *bufio.Reader, req *nethttp.Request) bool {
				if req.URL.Path != "/two" {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					return true
				}
				seconds.Add(1)
				if tc.hang {
					io.Copy(io.Discard, br)
				}
				return false // dropped, unanswered
			})
			_, c := proxied(t, Options{BackendTimeout: 300 * time.Millisecond}, dial)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			io.WriteString(c, "GET /one HTTP/1.1\r\nHost: d\r\n\r\n") // the backend connection is kept
			if res, err := nethttp.ReadResponse(br, nil); err != nil || res.StatusCode != 200 {
				t.Fatalf("first request: %v %v", res, err)
			}
			io.ReadAll(io.LimitReader(br, 2))
			handed := handedOff.Load()
			io.WriteString(c, tc.second)
			res, err := nethttp.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tc.want {
				t.Errorf("status %d, want %d", res.StatusCode, tc.want)
			}
			if n, want := seconds.Load(), max(tc.times, 1); n != want {
				t.Errorf("the backend got the request %d times, want %d", n, want)
			}
			if viaNetHTTP := strings.Contains(tc.name, "net/http"); viaNetHTTP != (handedOff.Load() > handed) {
				t.Errorf("handed to net/http: %v, want %v", !viaNetHTTP, viaNetHTTP)
			}
		})
	}
}

// A kept connection its backend closed while idle is not used for a
// request that cannot be sent again: the proxy sees the close first and
// takes a new connection, so the POST is answered, not failed.
func TestClosedKeptConnectionNotUsedForAPOST(t *testing.T) {
	dial, accepted := rawBackend(t, "fresh", 0)
	base := serve(t, Options{}, Route{Prefix: "/", Dial: dial})
	if resp, body := get(t, base+"/"); resp.StatusCode != 200 || body != "fresh" {
		t.Fatalf("GET: %d %q", resp.StatusCode, body)
	}
	time.Sleep(50 * time.Millisecond) // the backend's close arrives
	resp, err := nethttp.Post(base+"/", "text/plain", nethttp.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "fresh" {
		t.Errorf("POST: %d %q", resp.StatusCode, body)
	}
	if n := accepted.Load(); n != 2 {
		t.Errorf("%d backend connections, want 2", n)
	}
}

// A kept backend connection holds a descriptor of the process-wide
// budget while it is idle (its client's Gate no longer counts it), and
// is closed rather than kept when the budget has none left. Before, the
// routes' idle connections, up to 64 each, were counted nowhere.
func TestKeptConnectionsCountInTheBudget(t *testing.T) {
	const burst = 3
	bb := newBurstBackend(t, burst)
	b := &conns{dial: xconnect.TCPDialer(bb.addr), headerTimeout: 5 * time.Second}
	before := xconnect.DescriptorsLeft()
	bb.burst(t, b, burst)
	if left := xconnect.DescriptorsLeft(); left != before-burst {
		t.Errorf("%d kept connections, and the budget went from %d to %d", burst, before, left)
	}
	b.close()
	if left := xconnect.DescriptorsLeft(); left != before {
		t.Errorf("the route closed, and the budget is %d, was %d", left, before)
	}

	// The budget used up: a connection is closed once its answer is
	// read, not kept.
	b = &conns{dial: xconnect.TCPDialer(bb.addr), headerTimeout: 5 * time.Second}
	t.Cleanup(b.close)
	full := xconnect.DescriptorsLeft()
	if !xconnect.TakeDescriptors(full) {
		t.Fatal("the budget refused what it had left")
	}
	defer xconnect.GiveDescriptors(full)
	closedBefore := bb.closed.Load()
	if err := roundTrip(b, "/one"); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	kept := len(b.idle)
	b.mu.Unlock()
	if kept != 0 {
		t.Errorf("%d connections kept with the budget used up", kept)
	}
	for deadline := time.Now().Add(5 * time.Second); bb.closed.Load() == closedBefore; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the connection was not closed")
		}
	}
}

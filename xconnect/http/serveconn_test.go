package http

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pantavisor/pv/xconnect"
)

// answerEach proxies to a backend answering every request head it reads
// with "ok", after gate lets it (nil: at once), which tells heads of each
// head; it returns a client connection to the proxy.
func answerEach(t *testing.T, heads chan<- string, gate <-chan struct{}) net.Conn {
	dial := eachRequest(t, func(c net.Conn, _ *bufio.Reader, req *nethttp.Request) bool {
		if heads != nil {
			heads <- req.Method + " " + req.URL.Path
		}
		if gate != nil {
			<-gate
		}
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return err == nil
	})
	_, c := proxied(t, Options{}, dial)
	return c
}

// eachRequest is a backend that reads each connection's requests, their
// bodies discarded, and gives each to handle, until handle returns false.
func eachRequest(t *testing.T, handle func(c net.Conn, br *bufio.Reader, req *nethttp.Request) bool) xconnect.Dialer {
	return acceptEach(t, func(c net.Conn) { serveRequests(c, handle) })
}

// serveRequests is eachRequest's loop on one connection: it ends at a
// request it cannot read or when handle returns false.
func serveRequests(c net.Conn, handle func(c net.Conn, br *bufio.Reader, req *nethttp.Request) bool) {
	br := bufio.NewReader(c)
	for {
		req, err := nethttp.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		if !handle(c, br, req) {
			return
		}
	}
}

// readAnswers reads n answers of answerEach from br, failing after 5 s.
func readAnswers(t *testing.T, c net.Conn, br *bufio.Reader, n int) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range n {
		res, err := nethttp.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("answer %d: %d %q", i, res.StatusCode, b)
		}
	}
}

// A request that arrives while the one before waits on its backend (a
// pipelining client) is served once that answer is written. A proxy that
// waited for the client without reading after an answer would miss it,
// its wake-up having come (and gone) during the exchange.
func TestRequestArrivingDuringTheExchangeServed(t *testing.T) {
	heads, gate := make(chan string, 4), make(chan struct{})
	c := answerEach(t, heads, gate)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /one HTTP/1.1\r\nHost: d\r\n\r\n")
	if h := <-heads; h != "GET /one" {
		t.Fatalf("backend got %q", h)
	}
	// The proxy waits on the backend; the next request comes now, after
	// its read of the first.
	io.WriteString(c, "GET /two HTTP/1.1\r\nHost: d\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	gate <- struct{}{}
	readAnswers(t, c, br, 1)
	select {
	case h := <-heads:
		if h != "GET /two" {
			t.Fatalf("backend got %q", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the second request was not passed on")
	}
	gate <- struct{}{}
	readAnswers(t, c, br, 1)
}

// Keep-alive requests without a body are served in fast turns; one with
// a body in a slow turn, after which the connection's requests are fast
// again; requests pipelined in one write are all answered, in order; all
// of them on the plain path.
func TestKeptAndPipelinedRequests(t *testing.T) {
	heads := make(chan string, 16)
	c := answerEach(t, heads, nil)
	br := bufio.NewReader(c)
	fast0, plain0 := fastTurns.Load(), plainServed.Load()
	for range 3 {
		io.WriteString(c, "GET /a HTTP/1.1\r\nHost: d\r\n\r\n")
		readAnswers(t, c, br, 1)
	}
	if n := fastTurns.Load() - fast0; n != 3 {
		t.Errorf("%d of 3 bodiless requests in fast turns", n)
	}
	fast0 = fastTurns.Load()
	io.WriteString(c, "POST /b HTTP/1.1\r\nHost: d\r\nContent-Length: 5\r\n\r\nhello")
	readAnswers(t, c, br, 1)
	if n := fastTurns.Load() - fast0; n != 0 {
		t.Errorf("a request with a body counted as a fast turn")
	}
	io.WriteString(c, strings.Repeat("GET /c HTTP/1.1\r\nHost: d\r\n\r\n", 4))
	readAnswers(t, c, br, 4)
	if n := fastTurns.Load() - fast0; n != 4 {
		t.Errorf("%d of 4 pipelined requests in fast turns", n)
	}
	if n := plainServed.Load() - plain0; n != 8 {
		t.Errorf("%d of 8 requests on the plain path", n)
	}
	want := []string{"GET /a", "GET /a", "GET /a", "POST /b", "GET /c", "GET /c", "GET /c", "GET /c"}
	for i, w := range want {
		if h := <-heads; h != w {
			t.Fatalf("backend's request %d: %q, want %q", i, h, w)
		}
	}
}

// Close ends a server whose client waits on a backend that does not
// answer, at once. The backend connection is tracked from its dial, and
// its Close untracks it: xconnect.Conns.Close must not hold its lock while
// it closes the connections.
func TestCloseWhileARequestWaitsOnItsBackend(t *testing.T) {
	got := make(chan struct{}, 1)
	dial := acceptEach(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := nethttp.ReadRequest(br); err == nil {
			got <- struct{}{}
		}
		io.Copy(io.Discard, c) // never answers
	})
	s, c := proxied(t, Options{BackendTimeout: time.Hour}, dial)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: d\r\n\r\n")
	<-got
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while a request waited on its backend")
	}
}

// The header timeout holds for an answer that follows a quick one on the
// same backend connection: the deadline the first request set stands for
// the second (armHeader), or, when the first answer's body was read from
// the socket without it (lift), is set again.
func TestHeaderTimeoutAfterAQuickAnswer(t *testing.T) {
	for name, first := range map[string]string{
		"answer whole with its head": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"chunked answer":             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			var conns atomic.Int32
			dial := acceptEach(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				if _, err := nethttp.ReadRequest(br); err != nil {
					return
				}
				if conns.Add(1) == 1 {
					io.WriteString(c, first)
				}
				// Nothing else is answered (the proxy sends a
				// request again once on a new connection).
				io.Copy(io.Discard, br)
			})
			_, c := proxied(t, Options{BackendTimeout: 300 * time.Millisecond}, dial)
			br := bufio.NewReader(c)
			io.WriteString(c, "GET /one HTTP/1.1\r\nHost: d\r\n\r\n")
			readAnswers(t, c, br, 1)
			began := time.Now()
			io.WriteString(c, "GET /two HTTP/1.1\r\nHost: d\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			res, err := nethttp.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(began); res.StatusCode != nethttp.StatusGatewayTimeout || d > 3*time.Second {
				t.Errorf("%d after %v, want 504 after 300 to 600 ms", res.StatusCode, d)
			}
		})
	}
}

// A client that half-closes right after its request gets the answer and
// then the proxy's close, at once, not after the idle timeout: its end of
// stream comes with the request, in the same wake-up, and only a read
// after the answer finds it (see serveConn).
func TestHalfClosedClientClosedAfterItsAnswer(t *testing.T) {
	for i := range 20 {
		c := answerEach(t, nil, nil)
		io.WriteString(c, "GET /a HTTP/1.1\r\nHost: d\r\n\r\n")
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || !strings.HasSuffix(string(got), "\r\n\r\nok") {
			t.Fatalf("connection %d: read %q: %v", i, got, err)
		}
	}
}

// A client that half-closes after a request with a body, after requests
// pipelined in one write, or on a kept connection with or without a last
// request, gets every answer and then the connection's end: the end is
// seen however it came (with the request, or alone, when either Go's
// poller or the hang-up watcher may wake the wait first), and a past
// deadline the watcher set to wake a wait fails no read after it.
func TestHalfClosedClientAfterBodyOrPipelineAnswered(t *testing.T) {
	for i := range 20 {
		for _, tc := range []struct {
			name, reqs string
			answers    int
		}{
			{"body", "POST /a HTTP/1.1\r\nHost: d\r\nContent-Length: 5\r\n\r\nhello", 1},
			{"pipeline", strings.Repeat("GET /a HTTP/1.1\r\nHost: d\r\n\r\n", 3), 3},
			{"kept", "GET /a HTTP/1.1\r\nHost: d\r\n\r\n", 1},
			{"idle", "", 0},
		} {
			c := answerEach(t, nil, nil)
			if tc.name == "kept" || tc.name == "idle" {
				// A request answered first, so that the end comes to a
				// connection waiting without reading.
				io.WriteString(c, "GET /a HTTP/1.1\r\nHost: d\r\n\r\n")
				readAnswers(t, c, bufio.NewReader(c), 1)
				time.Sleep(time.Duration(i%3) * time.Millisecond)
			}
			io.WriteString(c, tc.reqs)
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if n := strings.Count(string(got), "\r\n\r\nok"); err != nil || n != tc.answers {
				t.Fatalf("%s, connection %d: %d of %d answers, then %v: %q", tc.name, i, n, tc.answers, err, got)
			}
		}
	}
}

// An answer larger than the sockets hold, to a client that reads it only
// later, is written in a fast turn as far as the socket takes it and then
// through the poller; it arrives whole, and the connection goes on.
func TestLargeAnswerToALateReaderInAFastTurn(t *testing.T) {
	const size = 32 << 20 // more than loopback TCP's buffers take
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	dial := eachRequest(t, func(c net.Conn, _ *bufio.Reader, req *nethttp.Request) bool {
		if req.URL.Path != "/big" {
			_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return err == nil
		}
		_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		if err == nil {
			_, err = c.Write(body)
		}
		return err == nil
	})
	_, c := proxied(t, Options{}, dial)
	br := bufio.NewReader(c)
	fast0, waits0 := fastTurns.Load(), pollerWrites.Load()
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: d\r\n\r\n")
	time.Sleep(200 * time.Millisecond) // the sockets fill up
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := nethttp.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(res.Body)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("body: %d bytes of %d (equal: %v), %v", len(got), size, bytes.Equal(got, body), err)
	}
	if n := pollerWrites.Load() - waits0; n == 0 {
		t.Error("the answer never waited for the client: the test did not fill the sockets")
	}
	io.WriteString(c, "GET /small HTTP/1.1\r\nHost: d\r\n\r\n")
	readAnswers(t, c, br, 1)
	if n := fastTurns.Load() - fast0; n != 2 {
		t.Errorf("%d of 2 requests in fast turns", n)
	}
}

// A client that does not read its answer is cut off after the send
// timeout, on each path, and the backend connection the answer came on
// is closed: neither is held for ever.
func TestClientNotReadingCutAfterTheSendTimeout(t *testing.T) {
	const size = 32 << 20 // more than loopback TCP's buffers take
	body := bytes.Repeat([]byte("z"), size)
	cut := make(chan string, 4)
	dial := eachRequest(t, func(c net.Conn, _ *bufio.Reader, req *nethttp.Request) bool {
		if strings.HasPrefix(req.URL.Path, "/small") {
			_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return err == nil
		}
		_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		if err == nil {
			_, err = c.Write(body)
		}
		if err != nil {
			cut <- req.Method + " " + req.URL.EscapedPath() + " "
		}
		return err == nil
	})
	for _, raw := range []string{
		"GET /big HTTP/1.1\r\nHost: d\r\n\r\n",                        // a fast turn
		"POST /big HTTP/1.1\r\nHost: d\r\nContent-Length: 1\r\n\r\nx", // a slow one
		"GET /big%2F HTTP/1.1\r\nHost: d\r\n\r\n",                     // net/http's path
		// net/http clears the write deadline after each answer: the
		// second answer, within a second of the first, must set it again.
		"GET /small%2F HTTP/1.1\r\nHost: d\r\n\r\nGET /big%2F HTTP/1.1\r\nHost: d\r\n\r\n",
	} {
		_, c := proxied(t, Options{SendTimeout: 300 * time.Millisecond}, dial)
		io.WriteString(c, raw)
		select {
		case got := <-cut:
			if !strings.Contains(raw, got) {
				t.Errorf("%q: the backend's answer to %q was cut", raw, got)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%q: the backend connection is still open after 10 s", raw)
			continue
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, c)
		if n >= size || (err != nil && os.IsTimeout(err)) {
			t.Errorf("%q: the client got %d bytes (of %d), then %v: not cut off", raw, n, size, err)
		}
	}
}

// When the hang-up watcher's wake (a past read deadline) is there before
// the fast turn's wait starts, the wait ends with the deadline, not with
// readiness: the connection turns to slow turns, which read the request
// that came with the client's end and answer it. A slow turn that still
// read the socket as the fast turn does (without waiting, as drained) lost
// that request and closed the connection unanswered.
func TestRequestWithTheEndServedWhenTheWatcherWakesFirst(t *testing.T) {
	waiting, release := make(chan *clientConn, 1), make(chan struct{})
	var releaseOnce sync.Once
	let := func() { releaseOnce.Do(func() { close(release) }) }
	fast0 := fastTurns.Load()
	testHookWaiting = func(cc *clientConn) {
		if fastTurns.Load() == fast0 {
			return // a wait before the first request
		}
		select {
		case waiting <- cc:
			<-release
		default:
		}
	}
	t.Cleanup(func() { testHookWaiting = nil })
	c := answerEach(t, nil, nil)
	t.Cleanup(let) // before the server's close, which waits for the turn
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /one HTTP/1.1\r\nHost: d\r\n\r\n")
	readAnswers(t, c, br, 1)
	var cc *clientConn
	select {
	case cc = <-waiting:
	case <-time.After(5 * time.Second):
		t.Fatal("no fast turn waited after the first answer (no hang-up watcher?)")
	}
	// The last request and the end, while the turn has not waited yet.
	io.WriteString(c, "GET /two HTTP/1.1\r\nHost: d\r\n\r\n")
	c.(*net.TCPConn).CloseWrite()
	for deadline := time.Now().Add(5 * time.Second); !cc.wt.HungUp(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not see the client's end")
		}
	}
	let()
	readAnswers(t, c, br, 1)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after the last answer: %d bytes, %v; want the end", n, err)
	}
}

// A connection is registered with the hang-up watcher only before a wait
// that follows a read shorter than asked: a wait after a read that found
// the socket empty needs none (its end, if it comes, wakes the wait). So
// a client that opens a connection per request costs no registration,
// whether its request came before the proxy's first read or after, and a
// kept connection is registered once.
func TestOnlyConnectionsThatWaitAfterDataAreWatched(t *testing.T) {
	dial := eachRequest(t, func(c net.Conn, _ *bufio.Reader, _ *nethttp.Request) bool {
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return err == nil
	})
	// proxied's own connection stays idle: it waits after a read that
	// found nothing, which needs no registration.
	_, idle := proxied(t, Options{}, dial)
	addr := idle.RemoteAddr().String()
	// talk, unlike the package's exchange, can pause before it writes and
	// waits for each answer before the next request.
	talk := func(pause time.Duration, req string, n int) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		time.Sleep(pause) // the proxy's first read finds nothing, then waits
		br := bufio.NewReader(c)
		for range n {
			io.WriteString(c, req)
			readAnswers(t, c, br, 1)
		}
	}

	const once = "GET /once HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"
	fast0, watched0 := fastTurns.Load(), watched.Load()
	for range 3 {
		talk(0, once, 1)
		talk(50*time.Millisecond, once, 1)
	}
	if n := fastTurns.Load() - fast0; n != 6 {
		t.Errorf("%d of 6 one-request connections served in fast turns", n)
	}
	if n := watched.Load() - watched0; n != 0 {
		t.Errorf("%d of 6 one-request connections registered with the watcher, want none", n)
	}

	watched0 = watched.Load()
	talk(0, "GET /kept HTTP/1.1\r\nHost: d\r\n\r\n", 3)
	if n := watched.Load() - watched0; n != 1 {
		t.Errorf("a kept connection registered %d times, want once", n)
	}
}

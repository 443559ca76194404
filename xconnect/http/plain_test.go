package http

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	nethttp "net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/nstest"
	"github.com/pantavisor/pv/xconnect"
)

// scriptBackend answers each request with what answer gives (raw bytes,
// as written, and whether the connection ends after them), and records
// each request and its body as they arrived.
type scriptBackend struct {
	mu       sync.Mutex
	requests []*nethttp.Request
	bodies   []string
}

// acceptEach serves each connection to a new loopback listener with
// handle, in a goroutine of its own, until the test ends; it returns the
// dialer of the listener.
func acceptEach(tb testing.TB, handle func(c net.Conn)) xconnect.Dialer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	nstest.ServeEach(tb, ln, handle)
	return xconnect.TCPDialer(ln.Addr().String())
}

// proxied serves a server whose one route leads / to dial on a new
// loopback listener until the test ends, and returns it with a client
// connection to it.
func proxied(tb testing.TB, opt Options, dial xconnect.Dialer) (*Server, net.Conn) {
	s := NewServer(opt)
	s.Set([]Route{{Prefix: "/", Dial: dial}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go s.Serve(ln)
	tb.Cleanup(func() { s.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return s, c
}

func (b *scriptBackend) start(t *testing.T, answer func(r *nethttp.Request) (raw string, close bool)) xconnect.Dialer {
	return acceptEach(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			r, err := nethttp.ReadRequest(br)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(r.Body)
			b.mu.Lock()
			b.requests = append(b.requests, r)
			b.bodies = append(b.bodies, string(body))
			b.mu.Unlock()
			raw, closeAfter := answer(r)
			if _, err := io.WriteString(c, raw); err != nil || closeAfter {
				return
			}
		}
	})
}

func (b *scriptBackend) request(i int) (*nethttp.Request, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests[i], b.bodies[i]
}

// exchange sends raw on a new connection to addr and reads one answer per
// method, each with its body.
func exchange(t *testing.T, addr, raw string, methods ...string) []*nethttp.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*nethttp.Response
	for i, m := range methods {
		res, err := nethttp.ReadResponse(br, &nethttp.Request{Method: m})
		for err == nil && res.StatusCode < 200 { // 100 Continue
			res, err = nethttp.ReadResponse(br, &nethttp.Request{Method: m})
		}
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("answer %d body: %v", i, err)
		}
		res.Body = io.NopCloser(bytes.NewReader(body))
		out = append(out, res)
	}
	return out
}

func bodyOf(res *nethttp.Response) string { b, _ := io.ReadAll(res.Body); return string(b) }

// Plain requests take the plain path; an upgrade, an escaped path and a
// large body go to net/http's, on the same connection.
func TestPlainAndHandedOffRequests(t *testing.T) {
	be := &scriptBackend{}
	dial := be.start(t, func(r *nethttp.Request) (string, bool) {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(r.RequestURI), r.RequestURI), false
	})
	st := &xconnect.Stats{}
	base := serve(t, Options{}, Route{Prefix: "/api", Dial: dial, Stats: st})
	addr := strings.TrimPrefix(base, "http://")

	p0, h0 := plainServed.Load(), handedOff.Load()
	small := strings.Repeat("x", 1000)
	res := exchange(t, addr, "GET /api/a?q=1 HTTP/1.1\r\nHost: h\r\n\r\n"+
		"POST /api/b HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n"+small, "GET", "POST")
	if bodyOf(res[0]) != "/a?q=1" || bodyOf(res[1]) != "/b" {
		t.Fatalf("pipelined answers out of order or wrong")
	}
	if _, body := be.request(1); body != small {
		t.Errorf("body of the plain POST: %d bytes", len(body))
	}
	if p, h := plainServed.Load()-p0, handedOff.Load()-h0; p != 2 || h != 0 {
		t.Errorf("plain %d handed off %d, want 2 and 0", p, h)
	}
	if st.BytesUp.Load() != 1000 || st.BytesDown.Load() != int64(len("/a?q=1")+len("/b")) {
		t.Errorf("bytes up %d down %d", st.BytesUp.Load(), st.BytesDown.Load())
	}

	big := strings.Repeat("y", maxPlainBody+1)
	for name, raw := range map[string]string{
		"escaped path": "GET /api/a%2Fb HTTP/1.1\r\nHost: h\r\n\r\n",
		"large body":   fmt.Sprintf("PUT /api/big HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(big), big),
		"expect":       "PUT /api/e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz",
		"chunked body": "POST /api/c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
		"no host":      "GET /api/n HTTP/1.1\r\n\r\n",
	} {
		h0 := handedOff.Load()
		res := exchange(t, addr, raw, "GET")
		if handedOff.Load()-h0 != 1 {
			t.Errorf("%s: not handed to net/http", name)
		}
		want := 200
		if name == "no host" {
			want = 400 // net/http's answer
		}
		if res[0].StatusCode != want {
			t.Errorf("%s: %d, want %d", name, res[0].StatusCode, want)
		}
	}
	// One request on the plain path, then one net/http takes, on one
	// connection.
	h0 = handedOff.Load()
	res = exchange(t, addr, "GET /api/1 HTTP/1.1\r\nHost: h\r\n\r\nGET /api/%41 HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "GET")
	if bodyOf(res[0]) != "/1" || bodyOf(res[1]) != "/%41" || handedOff.Load()-h0 != 1 {
		t.Errorf("plain then handed off: %v", res)
	}
}

// Hop-by-hop fields go neither way; X-Forwarded-* are the proxy's.
func TestPlainHopFieldsDropped(t *testing.T) {
	be := &scriptBackend{}
	dial := be.start(t, func(r *nethttp.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nX-End: 2\r\nContent-Length: 2\r\n\r\nok", false
	})
	base := serve(t, Options{}, Route{Prefix: "/", Dial: dial})
	res := exchange(t, strings.TrimPrefix(base, "http://"), "GET /x HTTP/1.1\r\nHost: h:1\r\nConnection: keep-alive\r\n"+
		"Keep-Alive: 300\r\nProxy-Authorization: x\r\nTe: trailers, deflate\r\nX-Forwarded-For: 6.6.6.6\r\nX-App: a\r\n\r\n", "GET")
	got := res[0].Header
	if got.Get("Keep-Alive") != "" || got.Get("X-Hop") != "" || got.Get("Connection") != "" || got.Get("X-End") != "2" {
		t.Errorf("answer fields: %v", got)
	}
	r, _ := be.request(0)
	for _, f := range []string{"Keep-Alive", "Proxy-Authorization", "Connection"} {
		if v := r.Header.Get(f); v != "" {
			t.Errorf("backend got %s: %q", f, v)
		}
	}
	if r.Header.Get("Te") != "trailers" || r.Header.Get("X-App") != "a" || r.Host != "h:1" ||
		r.Header.Get("X-Forwarded-For") != "127.0.0.1" || r.Header.Get("X-Forwarded-Host") != "h:1" || r.Header.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("backend request: host %q fields %v", r.Host, r.Header)
	}
}

// Every framing of an answer reaches HTTP/1.1 and HTTP/1.0 clients whole,
// and the connection goes on or ends as it must.
func TestPlainAnswerFraming(t *testing.T) {
	answers := map[string]string{
		"/length":  "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n",
		"/eof":     "HTTP/1.0 200 OK\r\n\r\nto the end",
		"/head":    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
		"/nobody":  "HTTP/1.1 204 No Content\r\n\r\n",
		"/early":   "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	}
	be := &scriptBackend{}
	dial := be.start(t, func(r *nethttp.Request) (string, bool) {
		return answers[r.URL.Path], r.URL.Path == "/eof"
	})
	base := serve(t, Options{}, Route{Prefix: "/", Dial: dial})
	addr := strings.TrimPrefix(base, "http://")

	// HTTP/1.1: all on one connection, the last answer read to the
	// backend's end, which ends the client's connection too.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /length HTTP/1.1\r\nHost: h\r\n\r\nGET /chunked HTTP/1.1\r\nHost: h\r\n\r\n"+
		"HEAD /head HTTP/1.1\r\nHost: h\r\n\r\nGET /nobody HTTP/1.1\r\nHost: h\r\n\r\nGET /early HTTP/1.1\r\nHost: h\r\n\r\n"+
		"GET /eof HTTP/1.1\r\nHost: h\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []struct {
		method, body string
		code         int
		check        func(*nethttp.Response) string
	}{
		{"GET", "hello", 200, nil},
		{"GET", "hello world", 200, func(r *nethttp.Response) string {
			if r.Trailer.Get("X-Sum") != "42" || len(r.TransferEncoding) != 1 {
				return fmt.Sprintf("trailer %v encoding %v", r.Trailer, r.TransferEncoding)
			}
			return ""
		}},
		{"HEAD", "", 200, func(r *nethttp.Response) string {
			if r.ContentLength != 100 {
				return fmt.Sprint("length ", r.ContentLength)
			}
			return ""
		}},
		{"GET", "", 204, nil},
		{"GET", "ok", 200, nil},
		{"GET", "to the end", 200, func(r *nethttp.Response) string {
			if !r.Close {
				return "not closing after a body read to the backend's end"
			}
			return ""
		}},
	} {
		r, err := nethttp.ReadResponse(br, &nethttp.Request{Method: want.method})
		if err != nil {
			t.Fatalf("%q: %v", want.body, err)
		}
		body, err := io.ReadAll(r.Body)
		if err != nil || string(body) != want.body || r.StatusCode != want.code {
			t.Errorf("got %d %q (%v), want %d %q", r.StatusCode, body, err, want.code, want.body)
		}
		if want.check != nil {
			if msg := want.check(r); msg != "" {
				t.Errorf("%q: %s", want.body, msg)
			}
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("connection not closed after the answer read to its end: %v", err)
	}

	// HTTP/1.0: chunks are undone, and the connection ends unless the
	// client asks it to stay.
	for _, tc := range []struct{ raw, body string }{
		{"GET /chunked HTTP/1.0\r\nHost: h\r\n\r\n", "hello world"},
		{"GET /length HTTP/1.0\r\nHost: h\r\n\r\n", "hello"},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, tc.raw)
		all, err := io.ReadAll(c) // to the proxy's close
		c.Close()
		if err != nil || !bytes.HasSuffix(all, []byte("\r\n\r\n"+tc.body)) || !bytes.Contains(all, []byte("Connection: close")) {
			t.Errorf("HTTP/1.0 %q: %q %v", tc.raw, all, err)
		}
	}
	res := exchange(t, addr, "GET /length HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"+
		"GET /length HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", "GET", "GET")
	if res[0].Header.Get("Connection") != "keep-alive" || bodyOf(res[1]) != "hello" {
		t.Errorf("HTTP/1.0 keep-alive: %v", res[0].Header)
	}
}

// A chunked answer undone for an HTTP/1.0 client is read to the end of
// its trailer section: the kept backend connection then holds nothing of
// it, and the next request goes on that connection and gets its own
// answer. Before, the trailer and the last blank line stayed in the
// connection's reader, and the next request on it failed and was sent
// again on a new connection (or, if not replayable, sent on a new one).
func TestChunkedAnswerForHTTP10ReadToItsEnd(t *testing.T) {
	var conns atomic.Int64
	be := &scriptBackend{}
	dial := be.start(t, func(r *nethttp.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 42\r\nX-Other: 1\r\n\r\n", false
	})
	counted := func(ctx context.Context) (net.Conn, error) {
		conns.Add(1)
		return dial(ctx)
	}
	base := serve(t, Options{}, Route{Prefix: "/", Dial: counted})
	addr := strings.TrimPrefix(base, "http://")
	for i, raw := range []string{
		"GET /a HTTP/1.0\r\nHost: h\r\n\r\n",
		"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
		"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, raw)
		all, err := io.ReadAll(c)
		c.Close()
		if err != nil || !bytes.HasPrefix(all, []byte("HTTP/1.1 200 OK\r\n")) || !bytes.Contains(all, []byte("hello")) {
			t.Fatalf("request %d: %q %v", i, all, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d backend connections for three requests, want 1 (kept)", n)
	}
	be.mu.Lock()
	n := len(be.requests)
	be.mu.Unlock()
	if n != 3 {
		t.Errorf("the backend got %d requests, want 3", n)
	}
}

// No route: net/http's 404, and the connection goes on past a body.
func TestPlainNoRoute(t *testing.T) {
	base := serve(t, Options{}, Route{Prefix: "/only", Dial: backend(t, func(w nethttp.ResponseWriter, r *nethttp.Request) {})})
	res := exchange(t, strings.TrimPrefix(base, "http://"), "GET /other HTTP/1.1\r\nHost: h\r\n\r\n"+
		"POST /other HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /other HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "POST", "GET")
	for i, r := range res {
		if r.StatusCode != 404 || bodyOf(r) != "404 page not found\n" {
			t.Errorf("answer %d: %d", i, r.StatusCode)
		}
	}
}

func TestHeadEnd(t *testing.T) {
	for in, want := range map[string]int{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\nrest": 27,
		"GET / HTTP/1.1\r\nHost: h\r\n":         0,
		"GET / HTTP/1.1\r\nHost: h\r\n\r":       0,
		"GET / HTTP/1.1\nHost: h\n\n":           -1,
		"GET / HTTP/1.1\r\nHost: h\n\r\n":       -1,
		"\r\nGET / HTTP/1.1\r\n\r\n":            -1,
		"":                                      0,
	} {
		if got := headEnd([]byte(in)); got != want {
			t.Errorf("headEnd(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestParseRequestHead(t *testing.T) {
	for in, plain := range map[string]bool{
		"GET /a/b?x=%20&y HTTP/1.1\r\nHost: h\r\n\r\n":                                 true,
		"DELETE /a HTTP/1.0\r\nHost: h\r\n\r\n":                                        true,
		"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n":                      true,
		"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n":                    true,
		"GET /a%2F HTTP/1.1\r\nHost: h\r\n\r\n":                                        false,
		"GET http://h/a HTTP/1.1\r\nHost: h\r\n\r\n":                                   false,
		"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n":                                        false,
		"CONNECT h:1 HTTP/1.1\r\nHost: h\r\n\r\n":                                      false,
		"GET /a HTTP/2.0\r\nHost: h\r\n\r\n":                                           false,
		"GET /a HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n":                                false,
		"GET /a HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n":                     false,
		"GET /a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n\r\n":                    false,
		"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n": false,
		"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n":                     false,
		"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999\r\n\r\n":               false,
		"GET /a HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n":                             false,
		"GET /a HTTP/1.1\r\nHost: h\r\nBad Name: a\r\n\r\n":                            false,
		"GET /a HTTP/1.1\r\nHost: h\r\nX: \x01\r\n\r\n":                                false,
		"GET /a HTTP/1.1\r\nHost: h h\r\n\r\n":                                         false,
		"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n":                                        false,
		"GET /a#f HTTP/1.1\r\nHost: h\r\n\r\n":                                         false,
	} {
		if _, ok := parseRequestHead([]byte(in), nil); ok != plain {
			t.Errorf("parseRequestHead(%q) plain = %v, want %v", in, ok, plain)
		}
	}
}

// A head the plain path takes is one net/http reads the same way, and
// the backend's head made from it is one too, without hop-by-hop fields
// and with the proxy's identity and X-Forwarded-For only.
func FuzzParseRequestHead(f *testing.F) {
	f.Add([]byte("GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\nTe: trailers\r\n\r\n"))
	f.Add([]byte("POST /a HTTP/1.0\r\nHost: h:8\r\nContent-Length: 3\r\nKeep-Alive: 1\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: [::1]:80\r\nX-Forwarded-For: 1.2.3.4\r\nX-PV-Client: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		n := headEnd(in)
		if n <= 0 {
			return
		}
		h, ok := parseRequestHead(in[:n], nil)
		if !ok {
			return
		}
		ref, err := nethttp.ReadRequest(bufio.NewReader(bytes.NewReader(in[:n])))
		if err != nil {
			t.Fatalf("plain path took a head net/http refuses: %v", err)
		}
		if ref.Method != string(h.method) || ref.RequestURI != string(h.path)+string(h.query) || ref.Host != string(h.host) {
			t.Fatalf("read differently: %q %q %q vs %q %q %q", ref.Method, ref.RequestURI, ref.Host, h.method, string(h.path)+string(h.query), h.host)
		}
		if ref.ContentLength != h.length && (ref.ContentLength != -1 || h.length != 0) {
			t.Fatalf("length %d vs %d", ref.ContentLength, h.length)
		}
		out := h.appendBackendHead(nil, string(h.path), &route{Route: Route{Client: "c", Role: "r"}}, "10.0.0.1")
		got, err := nethttp.ReadRequest(bufio.NewReader(bytes.NewReader(out)))
		if err != nil {
			t.Fatalf("backend head %q: %v", out, err)
		}
		for _, f := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Upgrade", "Transfer-Encoding", "Proxy-Authorization"} {
			if len(got.Header[f]) > 0 {
				t.Fatalf("backend head keeps %s: %q", f, out)
			}
		}
		if got.Header.Get("X-Pv-Client") != "c" || len(got.Header["X-Pv-Client"]) != 1 ||
			len(got.Header["X-Forwarded-For"]) != 1 || got.Header.Get("X-Forwarded-For") != "10.0.0.1" || got.Host != ref.Host {
			t.Fatalf("backend head identity: %q", out)
		}
	})
}

// An answer head the plain path reads becomes one net/http reads with the
// same status and length, and one Connection field.
func FuzzResponseHead(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\nhello"), false)
	f.Add([]byte("HTTP/1.1 103 Early\r\n\r\nHTTP/1.0 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), true)
	f.Fuzz(func(t *testing.T, in []byte, http10 bool) {
		bufs := &exchangeBufs{}
		res, err := readResponseHead(bufio.NewReader(bytes.NewReader(in)), bufs)
		if err != nil || res.code == 101 {
			return
		}
		noBody := bodyless(false, res.code)
		out := res.appendClientHead(nil, http10, noBody, true)
		got, err := nethttp.ReadResponse(bufio.NewReader(bytes.NewReader(out)), &nethttp.Request{Method: "GET"})
		if err != nil {
			t.Fatalf("client head %q: %v", out, err)
		}
		if got.StatusCode != res.code {
			t.Fatalf("status %d, was %d", got.StatusCode, res.code)
		}
		if res.length >= 0 && got.ContentLength != res.length && !noBody {
			t.Fatalf("length %d, was %d: %q", got.ContentLength, res.length, out)
		}
		if n := bytes.Count(bytes.ToLower(out), []byte("\r\nconnection:")); n != 1 || !got.Close || got.Header.Get("Keep-Alive") != "" {
			t.Fatalf("connection fields (%d): %q", n, out)
		}
	})
}

// panicLog records the errors logged, where a recovered panic of a
// connection shows.
type panicLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *panicLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelError }
func (l *panicLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	l.msgs = append(l.msgs, msg)
	return nil
}
func (l *panicLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *panicLog) WithGroup(string) slog.Handler      { return l }

func (l *panicLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.msgs
	l.msgs = nil
	return m
}

// Whatever a client sends (and whatever the backend answers), a
// connection ends once the client has half-closed it, and nothing panics;
// an answer, when there is one, is one net/http reads.
func FuzzPlainServer(f *testing.F) {
	f.Add([]byte("GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab"), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	f.Add([]byte("GET /a HTTP/1.0\r\nHost: h\r\n\r\n"), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
	f.Add([]byte("HEAD /a HTTP/1.1\r\nHost: h\r\n\r\nGET /%41 HTTP/1.1\r\nHost: h\r\n\r\n"), "HTTP/1.1 204 No Content\r\n\r\n")
	f.Add([]byte("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
	f.Add([]byte("GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab"), "HTTP/1.0 200 OK\r\n\r\nrest")
	var answer atomic.Pointer[string]
	dial := acceptEach(f, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(time.Second)) // an answer short of its length ends here
		serveRequests(c, func(c net.Conn, _ *bufio.Reader, _ *nethttp.Request) bool {
			_, err := io.WriteString(c, *answer.Load())
			return err == nil
		})
	})
	log := &panicLog{}
	s := NewServer(Options{Log: slog.New(log), BackendTimeout: time.Second, ReadHeaderTimeout: time.Second, IdleTimeout: time.Second})
	s.Set([]Route{{Prefix: "/", Dial: dial}})
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go s.Serve(pl)
	defer s.Close()
	f.Fuzz(func(t *testing.T, in []byte, back string) {
		answer.Store(&back)
		c, err := net.Dial("tcp", pl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
		out, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("connection not ended: %v (%d bytes read)", err, len(out))
		}
		if msgs := log.take(); len(msgs) > 0 {
			t.Fatalf("logged: %q", msgs)
		}
		if len(out) > 0 {
			if _, err := nethttp.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil); err != nil {
				t.Fatalf("answer %q: %v", out, err)
			}
		}
	})
}

// A backend that answers before it has taken the whole body (413, say)
// is heard: its answer reaches the client, not a 502.
func TestPlainAnswerBeforeTheWholeBody(t *testing.T) {
	dial := acceptEach(t, func(c net.Conn) {
		nethttp.ReadRequest(bufio.NewReader(c)) // the head only
		io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	})
	base := serve(t, Options{}, Route{Prefix: "/", Dial: dial})
	body := strings.Repeat("b", maxPlainBody)
	res := exchange(t, strings.TrimPrefix(base, "http://"), fmt.Sprintf("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(body), body), "POST")
	if res[0].StatusCode != nethttp.StatusRequestEntityTooLarge {
		t.Errorf("%d, want the backend's 413", res[0].StatusCode)
	}
}

// Close ends the server at once, also while an answer streams for ever
// from its backend (a server-sent event stream, say, silent for now).
func TestCloseDuringStreamedAnswer(t *testing.T) {
	started := make(chan struct{}, 1)
	ended := make(chan struct{})
	defer close(ended)
	dial := acceptEach(t, func(c net.Conn) {
		nethttp.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nevent\r\n")
		started <- struct{}{}
		<-ended // the next event is a long way off
	})
	s, c := proxied(t, Options{}, dial)
	io.WriteString(c, "GET /events HTTP/1.1\r\nHost: h\r\n\r\n")
	<-started
	time.Sleep(50 * time.Millisecond) // the first event passed on
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close waits for an answer streamed for ever")
	}
}

// plainRig is one keep-alive client of a proxy whose one route leads to
// a backend answering every request with the same small reply, all on
// loopback in this process; it returns one exchange, which fails tb on
// anything but a whole 200. Neither the client nor the backend allocates
// per exchange, so what an exchange allocates is the proxy's.
func plainRig(tb testing.TB) (exchange func()) {
	reply := []byte("HTTP/1.1 200 OK\r\nContent-Length: 23\r\nContent-Type: text/plain\r\n\r\nhello from the backend\n")
	dial := acceptEach(tb, func(c net.Conn) {
		buf := make([]byte, 4<<10)
		for {
			// One request per read: the proxy writes each head whole
			// and waits for its answer.
			if n, err := c.Read(buf); err != nil || n == 0 {
				return
			}
			if _, err := c.Write(reply); err != nil {
				return
			}
		}
	})
	_, c := proxied(tb, Options{}, dial)
	req := []byte("GET /page HTTP/1.1\r\nHost: device\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	got := make([]byte, 4<<10)
	want := 0 // the first answer's size: all are the same
	return func() {
		if _, err := c.Write(req); err != nil {
			tb.Fatal(err)
		}
		n, err := c.Read(got)
		for err == nil && n < want {
			var k int
			k, err = c.Read(got[n:])
			n += k
		}
		if err != nil || !bytes.HasPrefix(got[:n], []byte("HTTP/1.1 200 ")) || !bytes.HasSuffix(got[:n], []byte("backend\n")) {
			tb.Fatalf("answer %q: %v", got[:n], err)
		}
		want = n
	}
}

// The plain path allocates nothing per request once a connection runs:
// an allocation per request is garbage-collector work that the http
// ingress CPU figure pays (make bench). The count is the process's, so
// the client and the backend of plainRig allocate nothing either.
func TestPlainPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	exchange := plainRig(t)
	exchange() // the backend connection is dialled, the buffers pooled
	if n := testing.AllocsPerRun(500, exchange); n != 0 {
		t.Errorf("%v allocations per request on the plain path, want 0", n)
	}
}

// BenchmarkPlainExchange is one keep-alive client's GET through the plain
// path: the proxy's CPU per request, with the client's and the backend's.
func BenchmarkPlainExchange(b *testing.B) {
	exchange := plainRig(b)
	exchange()
	b.ReportAllocs()
	for b.Loop() {
		exchange()
	}
}

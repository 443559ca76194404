package http

import (
	"bufio"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/xconnect"
)

// backend serves handler on a loopback port and returns its dialer.
func backend(t *testing.T, h nethttp.HandlerFunc) xconnect.Dialer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &nethttp.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return xconnect.TCPDialer(ln.Addr().String())
}

func serve(t *testing.T, opt Options, routes ...Route) string {
	s := NewServer(opt)
	s.Set(routes)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (*nethttp.Response, string) {
	t.Helper()
	resp, err := nethttp.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestRoutingAndHeaders(t *testing.T) {
	echo := func(name string) nethttp.HandlerFunc {
		return func(w nethttp.ResponseWriter, r *nethttp.Request) {
			if r.URL.Path == "/missing" {
				w.Header().Set("X-Custom", "kept")
				w.WriteHeader(nethttp.StatusNotFound)
				fmt.Fprint(w, "not here")
				return
			}
			fmt.Fprintf(w, "%s %s xff=%s proto=%s host=%s client=%q", name, r.URL.Path,
				r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.Header.Values("X-PV-Client"))
		}
	}
	base := serve(t, Options{},
		Route{Prefix: "/api", Dial: backend(t, echo("api"))},
		Route{Prefix: "/api/v2", Dial: backend(t, echo("v2")), Client: "app", Role: "reader"},
		Route{Prefix: "/", Dial: backend(t, echo("root"))},
	)
	for path, want := range map[string]string{
		"/api/x":    "api /x xff=127.0.0.1",
		"/api":      "api / xff=127.0.0.1",
		"/api/v2/y": `v2 /y xff=127.0.0.1 proto=http host=`,
		"/apix":     "root /apix",
		"/":         "root /",
	} {
		_, body := get(t, base+path)
		if !strings.HasPrefix(body, want) {
			t.Errorf("%s: %q, want %q…", path, body, want)
		}
	}
	if _, body := get(t, base+"/api/v2/y"); !strings.Contains(body, `client=["app"]`) {
		t.Errorf("identity not set: %s", body)
	}
	resp, body := get(t, base+"/api/missing")
	if resp.StatusCode != 404 || resp.Header.Get("X-Custom") != "kept" || body != "not here" {
		t.Errorf("backend 404: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	// No route: 404 from the proxy itself.
	only := serve(t, Options{}, Route{Prefix: "/only", Dial: backend(t, echo("x"))})
	if resp, _ := get(t, only+"/other"); resp.StatusCode != 404 {
		t.Errorf("no route: %d", resp.StatusCode)
	}
}

func TestBackendDownAndHanging(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	to := dead.Addr().String()
	dead.Close()
	st := &xconnect.Stats{}
	stop := make(chan struct{})
	defer close(stop)
	hang := backend(t, func(w nethttp.ResponseWriter, r *nethttp.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	})
	base := serve(t, Options{BackendTimeout: 200 * time.Millisecond},
		Route{Prefix: "/down", Dial: xconnect.TCPDialer(to), Stats: st},
		Route{Prefix: "/hang", Dial: hang})
	if resp, _ := get(t, base+"/down"); resp.StatusCode != nethttp.StatusBadGateway {
		t.Errorf("backend down: %d", resp.StatusCode)
	}
	if resp, _ := get(t, base+"/hang"); resp.StatusCode != nethttp.StatusGatewayTimeout {
		t.Errorf("backend hanging: %d", resp.StatusCode)
	}
	if st.Errors.Load() != 1 {
		t.Errorf("errors %d", st.Errors.Load())
	}
}

// A WebSocket upgrade passes through: after the 101, bytes flow both ways.
func TestWebSocketUpgrade(t *testing.T) {
	ws := backend(t, func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			nethttp.Error(w, "want an upgrade", 400)
			return
		}
		c, rw, err := nethttp.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		line, _ := rw.ReadString('\n')
		rw.WriteString("echo " + line)
		rw.Flush()
	})
	base := serve(t, Options{}, Route{Prefix: "/ws", Dial: ws})
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "GET /ws/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	r := bufio.NewReader(c)
	resp, err := nethttp.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprint(c, "hello\n")
	if line, err := r.ReadString('\n'); err != nil || line != "echo hello\n" {
		t.Fatalf("after the upgrade: %q %v", line, err)
	}
}

// A 100 MB upload streams: the proxy's heap does not grow with it.
func TestUploadStreams(t *testing.T) {
	got := make(chan int64, 1)
	up := backend(t, func(w nethttp.ResponseWriter, r *nethttp.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got <- n
		fmt.Fprint(w, n)
	})
	st := &xconnect.Stats{}
	base := serve(t, Options{}, Route{Prefix: "/", Dial: up, Stats: st})
	const size = 100 << 20
	var peak uint64
	done, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}
	}()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resp, err := nethttp.Post(base+"/upload", "application/octet-stream", io.LimitReader(zeros{}, size))
	close(done)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := <-got; n != size {
		t.Fatalf("backend got %d bytes", n)
	}
	if grew := int64(peak) - int64(before.HeapInuse); grew > 16<<20 {
		t.Errorf("heap grew by %d MiB for a 100 MiB upload", grew>>20)
	}
	if st.BytesUp.Load() != size {
		t.Errorf("bytes up %d", st.BytesUp.Load())
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestParseTarget(t *testing.T) {
	for in, want := range map[string][2]string{
		"0.0.0.0:80/api": {"0.0.0.0:80", "/api"},
		":8080":          {"0.0.0.0:8080", "/"},
		"127.0.0.1:81/":  {"127.0.0.1:81", "/"},
		":80/a/b/":       {"0.0.0.0:80", "/a/b"},
		":80///":         {"0.0.0.0:80", "/"},
	} {
		addr, prefix, err := ParseTarget(in)
		if err != nil || addr != want[0] || prefix != want[1] {
			t.Errorf("ParseTarget(%q) = %q %q %v", in, addr, prefix, err)
		}
	}
	for _, bad := range []string{"", "80", "host:80", ":0", ":99999", "1.2.3.4:x/"} {
		if _, _, err := ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q) accepted", bad)
		}
	}
}

func FuzzParseTarget(f *testing.F) {
	f.Add(":80/api")
	f.Add("10.0.0.1:8080")
	f.Fuzz(func(t *testing.T, s string) {
		addr, prefix, err := ParseTarget(s)
		if err != nil {
			return
		}
		if _, err := net.ResolveTCPAddr("tcp", addr); err != nil || prefix == "" || prefix[0] != '/' {
			t.Fatalf("ParseTarget(%q) = %q %q", s, addr, prefix)
		}
	})
}

func FuzzMatch(f *testing.F) {
	f.Add("/api", "/api/v2", "/api/v2/x")
	f.Fuzz(func(t *testing.T, a, b, path string) {
		prefixes := []string{a, b}
		i, rest, ok := Match(prefixes, path)
		// takes says whether prefix p covers path on a segment boundary.
		takes := func(p string) bool {
			p = cleanPrefix(p)
			return p == "/" || path == p || strings.HasPrefix(path, p+"/")
		}
		if !ok {
			if takes(a) || takes(b) {
				t.Fatalf("Match(%q, %q, %q): no route, but one covers the path", a, b, path)
			}
			return
		}
		if rest == "" || rest[0] != '/' || i < 0 || i > 1 {
			t.Fatalf("Match(%q, %q, %q) = %d %q", a, b, path, i, rest)
		}
		if !takes(prefixes[i]) || (takes(prefixes[1-i]) && len(cleanPrefix(prefixes[1-i])) > len(cleanPrefix(prefixes[i]))) {
			t.Fatalf("Match(%q, %q, %q) = %d: not the longest covering prefix", a, b, path, i)
		}
		// The server's table (cleaned, longest first, as Set makes it)
		// routes the same.
		s := NewServer(Options{})
		s.Set([]Route{{Prefix: a}, {Prefix: b}})
		tb := s.routes.Load()
		j, rest2, ok2 := tb.match(path)
		if !ok2 || rest2 != rest || cleanPrefix(tb.routes[j].Prefix) != cleanPrefix(prefixes[i]) {
			t.Fatalf("table %q routes %q to %d %q %v, Match to %q %q", tb.prefixes, path, j, rest2, ok2, prefixes[i], rest)
		}
	})
}

// A client must not be able to claim an identity: X-PV-Client and
// X-PV-Role reach a backend only as the proxy set them, also on routes
// that carry no identity (ingress).
func TestIdentityHeadersNotForged(t *testing.T) {
	seen := func(w nethttp.ResponseWriter, r *nethttp.Request) {
		fmt.Fprintf(w, "client=%q role=%q", r.Header.Values("X-PV-Client"), r.Header.Values("X-PV-Role"))
	}
	base := serve(t, Options{},
		Route{Prefix: "/open", Dial: backend(t, seen)},
		Route{Prefix: "/link", Dial: backend(t, seen), Client: "app"},
	)
	for path, want := range map[string]string{
		"/open": `client=[] role=[]`,
		"/link": `client=["app"] role=[""]`,
	} {
		req, _ := nethttp.NewRequest("GET", base+path, nil)
		req.Header.Set("X-PV-Client", "root")
		req.Header.Set("X-PV-Role", "admin")
		resp, err := nethttp.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Errorf("%s: backend saw %s, want %s", path, b, want)
		}
	}
}

// Stripping the prefix keeps the rest of the path as the client escaped
// it: an encoded slash stays one segment.
func TestEscapedPathKept(t *testing.T) {
	base := serve(t, Options{}, Route{Prefix: "/api", Dial: backend(t, func(w nethttp.ResponseWriter, r *nethttp.Request) {
		fmt.Fprint(w, r.RequestURI)
	})})
	for path, want := range map[string]string{
		"/api/a%2Fb?q=1": "/a%2Fb?q=1",
		"/api/a%20b":     "/a%20b",
		"/api/x/y":       "/x/y",
		"/api":           "/",
	} {
		if _, body := get(t, base+path); body != want {
			t.Errorf("%s: backend got %q, want %q", path, body, want)
		}
	}
}

// A client that sends half a request head, or stays silent on a kept-alive
// connection, is cut off after its timeout instead of holding the
// connection for ever.
func TestSlowClientsCutOff(t *testing.T) {
	base := serve(t, Options{ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond},
		Route{Prefix: "/", Dial: backend(t, func(w nethttp.ResponseWriter, r *nethttp.Request) { fmt.Fprint(w, "ok") })})
	addr := strings.TrimPrefix(base, "http://")
	for name, send := range map[string]string{
		"half a head": "GET / HTTP/1.1\r\nHost: x\r\n",
		"idle":        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		// The server's clock starts at its accept, which may come before
		// Dial returns here: the clock starts before the dial.
		began := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, c) // to the server's close
		c.Close()
		if err != nil {
			t.Errorf("%s: not cut off: %v", name, err)
		} else if d := time.Since(began); d < 200*time.Millisecond || d > 3*time.Second {
			t.Errorf("%s: cut off after %v", name, d)
		}
	}
}

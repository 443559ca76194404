package rest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/nstest"
	"github.com/pantavisor/pv/xconnect"
)

// seen is what the provider got: per request, the identity headers and the
// connection it came on.
type seen struct {
	mu   sync.Mutex
	reqs []string
}

func startProvider(t *testing.T, path string) *seen {
	s := &seen{}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	type key struct{}
	var n int
	srv := &http.Server{
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			s.mu.Lock()
			n++
			defer s.mu.Unlock()
			return context.WithValue(ctx, key{}, n)
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			s.mu.Lock()
			s.reqs = append(s.reqs, fmt.Sprintf("conn=%d %s %s client=%q role=%q body=%s", r.Context().Value(key{}),
				r.Method, r.URL.Path, r.Header.Values(HeaderClient), r.Header.Values(HeaderRole), body))
			s.mu.Unlock()
			if r.URL.Path == "/missing" {
				w.Header().Set("X-Custom", "yes")
				http.Error(w, "no such thing", http.StatusNotFound)
				return
			}
			fmt.Fprint(w, "ok")
		}),
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// newLink is a rest link from app, role reader, to the provider's socket
// prov.
func newLink(prov string, st *xconnect.Stats) xconnect.Proxy {
	return New(xconnect.Config{Link: xconnect.Link{Consumer: "app", Provider: "api", Role: "reader"}, Stats: st,
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", prov)
		}})
}

// serveLink serves p on a consumer socket until the test ends, and
// returns the socket's path.
func serveLink(t *testing.T, p xconnect.Proxy) string {
	cons := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", cons)
	if err != nil {
		t.Fatal(err)
	}
	nstest.ServeProxy(t, p, ln)
	return cons
}

func startLink(t *testing.T, prov string) (string, *xconnect.Stats) {
	st := &xconnect.Stats{}
	return serveLink(t, newLink(prov, st)), st
}

// consumerClient makes its requests through the consumer socket cons.
func consumerClient(cons string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", cons)
	}}}
}

// Every request of one keep-alive connection carries the consumer's
// identity; forged headers are replaced, statuses and headers come back.
func TestIdentityOnEveryRequest(t *testing.T) {
	prov := filepath.Join(t.TempDir(), "prov.sock")
	s := startProvider(t, prov)
	cons, st := startLink(t, prov)
	c, err := net.Dial("unix", cons)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	for i, req := range []string{
		"GET /a HTTP/1.1\r\nHost: api\r\nX-PV-Client: root\r\nX-PV-Role: mgmt\r\n\r\n",
		"POST /b HTTP/1.1\r\nHost: api\r\nContent-Length: 4\r\nX-Pv-Client: forged\r\n\r\nbody",
		"GET /missing HTTP/1.1\r\nHost: api\r\n\r\n",
	} {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		if i == 2 && (resp.StatusCode != 404 || resp.Header.Get("X-Custom") != "yes") {
			t.Errorf("404 with a header came back as %d %v", resp.StatusCode, resp.Header)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	want := []string{
		`GET /a client=["app"] role=["reader"] body=`,
		`POST /b client=["app"] role=["reader"] body=body`,
		`GET /missing client=["app"] role=["reader"] body=`,
	}
	// Which pooled connection to the provider carried a request is not
	// this test's business: net/http returns a connection to its pool
	// after the response was read, so the next request may dial anew.
	got := make([]string, len(s.reqs))
	for i, r := range s.reqs {
		_, got[i], _ = strings.Cut(r, " ")
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("provider saw\n%s\nwant\n%s", strings.Join(s.reqs, "\n"), strings.Join(want, "\n"))
	}
	if st.Connections.Load() != 1 || st.BytesUp.Load() == 0 || st.BytesDown.Load() == 0 {
		t.Errorf("stats %+v", st.Snapshot())
	}
}

func TestProviderDownIs502(t *testing.T) {
	cons, st := startLink(t, filepath.Join(t.TempDir(), "nobody.sock"))
	c := consumerClient(cons)
	resp, err := c.Get("http://api/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || st.Errors.Load() != 1 {
		t.Fatalf("status %d, errors %d", resp.StatusCode, st.Errors.Load())
	}
}

// A connection switched to another protocol (101) is no longer the HTTP
// server's, but it is still the link's: closing the link ends it. Before,
// such a tunnel went on relaying after the link was closed.
func TestCloseEndsUpgradedConnections(t *testing.T) {
	prov := filepath.Join(t.TempDir(), "prov.sock")
	pl, err := net.Listen("unix", prov)
	if err != nil {
		t.Fatal(err)
	}
	nstest.ServeEach(t, pl, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		io.Copy(c, br) // echo
	})
	p := newLink(prov, nil)
	cons := serveLink(t, p)

	c, err := net.Dial("unix", cons)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	io.WriteString(c, "ping\n")
	if l, err := br.ReadString('\n'); err != nil || l != "ping\n" {
		t.Fatalf("echo before Close: %q %v", l, err)
	}
	p.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	io.WriteString(c, "still there?\n")
	if l, err := br.ReadString('\n'); err == nil {
		t.Fatalf("the tunnel still relays after the link closed: %q", l)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the tunnel still open 2 s after the link closed")
	}
}

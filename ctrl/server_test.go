package ctrl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pantavisor/pv/messages"
)

// role names one kind of caller in the permission table.
type role string

const (
	roleHost     role = "host"
	roleMgmtCtr  role = "mgmt-container"
	roleAppCtr   role = "app-container"
	roleGhost    role = "unknown-container"
	roleResolver role = "resolver-error"
)

var roleResolvers = map[role]Resolver{
	roleHost:     fixedResolver("", nil),
	roleMgmtCtr:  fixedResolver("mgmt-ctr", nil),
	roleAppCtr:   fixedResolver("app", nil),
	roleGhost:    fixedResolver("ghost", nil),
	roleResolver: fixedResolver("", errors.New("no such process")),
}

type outcome struct {
	status int
	// body, when set, is the exact answer body.
	body string
}

var (
	ok200     = outcome{status: http.StatusOK}
	denied403 = outcome{http.StatusForbidden, errJSON(msgNotMgmt)}
	unknown   = outcome{http.StatusInternalServerError, errJSON(msgUnknownCaller)}
)

var notFound404 = outcome{http.StatusNotFound, errJSON(msgNoResource)}

// mgmtOnly is the outcomes of a mgmt route that answers ok to the host and
// to mgmt containers.
func mgmtOnly(ok outcome) map[role]outcome {
	return map[role]outcome{roleHost: ok, roleMgmtCtr: ok, roleAppCtr: denied403, roleGhost: unknown, roleResolver: unknown}
}

// TestPermissions checks every endpoint for every kind of caller. A route
// added to routeTable without cases here fails the test.
func TestPermissions(t *testing.T) {
	cases := []struct {
		method, path, body string
		want               map[role]outcome
	}{
		{"GET", "/containers", "", map[role]outcome{
			roleHost: ok200, roleMgmtCtr: ok200, roleAppCtr: denied403, roleGhost: unknown, roleResolver: unknown}},
		{"GET", "/groups", "", map[role]outcome{
			roleHost: ok200, roleMgmtCtr: ok200, roleAppCtr: denied403, roleGhost: unknown, roleResolver: unknown}},
		{"GET", "/actors", "", map[role]outcome{
			roleHost: ok200, roleMgmtCtr: ok200, roleAppCtr: denied403, roleGhost: unknown, roleResolver: unknown}},
		{"PUT", "/containers/app", `{"action":"stop"}`, map[role]outcome{
			roleHost: ok200, roleMgmtCtr: ok200, roleAppCtr: denied403, roleGhost: unknown, roleResolver: unknown}},
		{"POST", "/signal", `{"type":"ready","payload":""}`, map[role]outcome{
			// The host passes the permission check but may not signal.
			roleHost:    {http.StatusInternalServerError, errJSON(msgSignalRefused)},
			roleMgmtCtr: ok200, roleAppCtr: ok200, roleGhost: unknown, roleResolver: unknown}},
		{"POST", "/commands", `{"op":"REBOOT_DEVICE","payload":"perm"}`, mgmtOnly(ok200)},
		{"GET", "/metrics", "", mgmtOnly(ok200)},
		// Each role has a fresh storage and its cases run in order: the
		// object and the revision are put before they are read.
		{"GET", "/objects", "", mgmtOnly(ok200)},
		{"PUT", "/objects/" + shaX, "x", mgmtOnly(ok200)},
		{"GET", "/objects/" + shaX, "", mgmtOnly(ok200)},
		{"PUT", "/steps/locals/perm", permState, mgmtOnly(ok200)},
		{"GET", "/steps", "", mgmtOnly(ok200)},
		{"GET", "/steps/locals/perm", "", mgmtOnly(ok200)},
		{"GET", "/steps/locals/perm/progress", "", mgmtOnly(ok200)},
		{"PUT", "/steps/locals/perm/commitmsg", "why", mgmtOnly(ok200)},
		{"GET", "/steps/current", "", mgmtOnly(notFound404)},
		{"GET", "/steps/0/progress", "", mgmtOnly(notFound404)},
		{"PUT", "/steps/0/commitmsg", "why", mgmtOnly(notFound404)},
		{"PUT", "/steps/0", permState, mgmtOnly(outcome{http.StatusBadRequest, errJSON(msgBadRevName)})},
		// Last of the storage cases: it removes the revision put above.
		{"POST", "/storage/gc", "", mgmtOnly(ok200)},
		// Metadata and information (meta.go, info.go).
		{"PUT", "/user-meta/perm", "v", mgmtOnly(ok200)},
		{"GET", "/user-meta", "", mgmtOnly(outcome{http.StatusOK, `{"perm":"v"}`})},
		{"DELETE", "/user-meta/perm", "", mgmtOnly(ok200)},
		{"PUT", "/device-meta/perm", "v", mgmtOnly(ok200)},
		{"GET", "/device-meta", "", mgmtOnly(outcome{http.StatusOK, `{"perm":"v"}`})},
		{"DELETE", "/device-meta/perm", "", mgmtOnly(ok200)},
		{"GET", "/buildinfo", "", mgmtOnly(ok200)},
		{"GET", "/drivers", "", mgmtOnly(outcome{http.StatusOK, "[]"})},
		{"PUT", "/drivers/load", "", mgmtOnly(ok200)},
		{"PUT", "/drivers/unload", "", mgmtOnly(ok200)},
		{"PUT", "/drivers/usb/load", "", mgmtOnly(outcome{http.StatusBadRequest, errJSON("Error loading driver")})},
		{"PUT", "/drivers/usb/unload", "", mgmtOnly(outcome{http.StatusBadRequest, errJSON("Error loading driver")})},
		{"GET", "/config", "", mgmtOnly(ok200)},
		{"GET", "/config2", "", mgmtOnly(ok200)},
		{"GET", "/xconnect-graph", "", mgmtOnly(outcome{http.StatusOK, "[]"})},
		{"GET", "/daemons", "", mgmtOnly(outcome{http.StatusOK, "[]"})},
		{"PUT", "/daemons/pv-xconnect", `{"action":"stop"}`, mgmtOnly(outcome{http.StatusNotFound, errJSON("Daemon not found")})},
	}

	covered := map[*route]bool{}
	for _, c := range cases {
		rt, _, _ := defaultRouter.match(c.method, c.path)
		if rt == nil {
			t.Fatalf("case %s %s matches no route", c.method, c.path)
		}
		covered[rt] = true
	}
	for _, rs := range defaultRouter.byFirst {
		for _, rt := range rs {
			if !covered[rt] {
				t.Errorf("route %s %s (%s) has no permission cases", rt.method, rt.pattern, rt.perm)
			}
		}
	}

	for r, res := range roleResolvers {
		sock := startServer(t, newFakeBackend(), res)
		client := unixClient(sock)
		for _, c := range cases {
			want, ok := c.want[r]
			if !ok {
				t.Errorf("%s %s: no outcome for role %s", c.method, c.path, r)
				continue
			}
			t.Run(fmt.Sprintf("%s_%s_%s", c.method, strings.TrimPrefix(c.path, "/"), r), func(t *testing.T) {
				got := do(t, client, c.method, c.path, c.body)
				if got.status != want.status {
					t.Fatalf("status %d, want %d (body %s)", got.status, want.status, got.body)
				}
				if want.body != "" && got.body != want.body {
					t.Errorf("body %s, want %s", got.body, want.body)
				}
			})
		}
	}
}

func TestAuthorize(t *testing.T) {
	cases := []struct {
		name   string
		perm   perm
		caller caller
		want   int
	}{
		{"host mgmt route", permMgmt, caller{mgmt: true}, 0},
		{"mgmt container mgmt route", permMgmt, caller{container: "m", mgmt: true}, 0},
		{"app container mgmt route", permMgmt, caller{container: "a"}, http.StatusForbidden},
		{"app container any route", permAny, caller{container: "a"}, 0},
		{"host any route", permAny, caller{mgmt: true}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got, _ := authorize(c.perm, c.caller); got != c.want {
				t.Errorf("authorize = %d, want %d", got, c.want)
			}
		})
	}
}

func TestErrorShapes(t *testing.T) {
	client := unixClient(startServer(t, newFakeBackend(), fixedResolver("", nil)))
	cases := []struct {
		name, method, path string
		status             int
		body               string
	}{
		{"unknown path", "GET", "/nope", 400, errJSON("unknown endpoint: /nope")},
		{"unknown path keeps query", "GET", "/nope?a=1", 400, errJSON("unknown endpoint: /nope?a=1")},
		{"trailing slash", "GET", "/containers/", 400, errJSON("unknown endpoint: /containers/")},
		{"deeper path", "GET", "/containers/web/logs", 400, errJSON("unknown endpoint: /containers/web/logs")},
		{"wrong method on a wildcard route", "GET", "/containers/web", 400, errJSON("Method not supported for this endpoint")},
		{"wrong method", "DELETE", "/containers", 400, errJSON(msgMethod)},
		{"GET on POST route", "GET", "/signal", 400, errJSON(msgMethod)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := do(t, client, c.method, c.path, "")
			if got.status != c.status || got.body != c.body {
				t.Errorf("got %d %s, want %d %s", got.status, got.body, c.status, c.body)
			}
			if ct := got.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestListings(t *testing.T) {
	b := newFakeBackend()
	client := unixClient(startServer(t, b, fixedResolver("", nil)))
	got := do(t, client, "GET", "/groups", "")
	want := `[{"name":"platform","status_goal":"READY","restart_policy":"system","status":"READY"}]`
	if got.status != 200 || got.body != want || got.header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /groups = %d %s %v", got.status, got.body, got.header)
	}
	got = do(t, client, "GET", "/actors", "")
	if got.status != 200 || !strings.HasPrefix(got.body, `{"path":"root","kind":"root","status":"running"`) {
		t.Errorf("GET /actors = %d %s", got.status, got.body)
	}

	b.mu.Lock()
	b.containers, b.groups = nil, nil
	b.mu.Unlock()
	for _, p := range []string{"/containers", "/groups"} {
		if got := do(t, client, "GET", p, ""); got.status != 200 || got.body != "[]" {
			t.Errorf("GET %s with none = %d %s, want 200 []", p, got.status, got.body)
		}
	}

	b.mu.Lock()
	b.containersErr = errors.New("actor timeout")
	b.tree = nil
	b.mu.Unlock()
	if got := do(t, client, "GET", "/containers", ""); got.status != 500 || got.body != errJSON("Cannot list containers") {
		t.Errorf("GET /containers on backend error = %d %s", got.status, got.body)
	}
	if got := do(t, client, "GET", "/actors", ""); got.status != 500 {
		t.Errorf("GET /actors without tree = %d %s", got.status, got.body)
	}
}

func TestSignal(t *testing.T) {
	b := newFakeBackend()
	client := unixClient(startServer(t, b, fixedResolver("app", nil)))
	cases := []struct {
		name, body string
		status     int
		resp       string
	}{
		{"ready", `{"type":"ready","payload":"hello"}`, 200, ""},
		{"no payload", `{"type":"ready"}`, 200, ""},
		{"bad json", `{"type":`, 400, errJSON(msgSignalFormat)},
		{"no type", `{"payload":"x"}`, 400, errJSON(msgSignalFormat)},
		{"empty type", `{"type":""}`, 400, errJSON(msgSignalFormat)},
		{"payload not a string", `{"type":"ready","payload":{}}`, 400, errJSON(msgSignalFormat)},
		{"empty body", ``, 400, errJSON(msgSignalFormat)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := do(t, client, "POST", "/signal", c.body)
			if got.status != c.status || got.body != c.resp {
				t.Errorf("got %d %q, want %d %q", got.status, got.body, c.status, c.resp)
			}
		})
	}
	b.mu.Lock()
	sigs := strings.Join(b.signals, "|")
	b.signalErr = fmt.Errorf("%w: goal is not READY", errors.New("signal refused"))
	b.mu.Unlock()
	if sigs != "app ready hello|app ready " {
		t.Errorf("signals delivered: %q", sigs)
	}
	got := do(t, client, "POST", "/signal", `{"type":"alive"}`)
	if got.status != 500 || got.body != errJSON(msgSignalRefused) {
		t.Errorf("refused signal = %d %s", got.status, got.body)
	}
}

func TestBodyLimit(t *testing.T) {
	client := unixClient(startServer(t, newFakeBackend(), fixedResolver("mgmt-ctr", nil)))
	// A valid signal of exactly the limit.
	prefix, suffix := `{"type":"ready","payload":"`, `"}`
	exact := prefix + strings.Repeat("x", 4096-len(prefix)-len(suffix)) + suffix
	if got := do(t, client, "POST", "/signal", exact); got.status != 200 {
		t.Errorf("4096-byte signal = %d %s", got.status, got.body)
	}
	over := prefix + strings.Repeat("x", 4097-len(prefix)-len(suffix)) + suffix
	if got := do(t, client, "POST", "/signal", over); got.status != 413 || got.body != errJSON(msgTooLarge) {
		t.Errorf("4097-byte signal = %d %s", got.status, got.body)
	}

	// Without Content-Length the limit is enforced while reading.
	if got := doChunked(t, client, "POST", "/signal", over); got.status != 413 || got.body != errJSON(msgTooLarge) {
		t.Errorf("chunked 4097-byte signal = %d %s", got.status, got.body)
	}

	// Routes without a body refuse one.
	if got := do(t, client, "GET", "/containers", "x"); got.status != 413 {
		t.Errorf("GET with a body = %d %s", got.status, got.body)
	}
}

// rawRequest sends req on a fresh connection and returns the answer's
// status line, body, and whether the server closed the connection after it.
func rawRequest(t *testing.T, sock, req string) (status, body string, closed bool) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	// A closed connection reads EOF at once; an open one times out.
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = br.ReadByte()
	return res.Status, string(b), errors.Is(err, io.EOF)
}

func TestHostHeader(t *testing.T) {
	sock := startServer(t, newFakeBackend(), fixedResolver("", nil))
	cases := []struct {
		name, req  string
		status     string
		wantClosed bool
	}{
		{"localhost", "GET /groups HTTP/1.1\r\nHost: localhost\r\n\r\n", "200 OK", false},
		{"localhost any case", "GET /groups HTTP/1.1\r\nHost: LocalHost\r\n\r\n", "200 OK", false},
		{"empty", "GET /groups HTTP/1.1\r\nHost:\r\n\r\n", "200 OK", false},
		{"absent in HTTP/1.0", "GET /groups HTTP/1.0\r\n\r\n", "200 OK", true},
		{"other host", "GET /groups HTTP/1.1\r\nHost: evil.example\r\n\r\n", "400 Bad Request", true},
		{"localhost with port", "GET /groups HTTP/1.1\r\nHost: localhost:80\r\n\r\n", "400 Bad Request", true},
		{"absolute URI", "GET http://evil.example/groups HTTP/1.1\r\nHost: localhost\r\n\r\n", "400 Bad Request", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body, closed := rawRequest(t, sock, c.req)
			if status != c.status {
				t.Fatalf("status %q, want %q (body %s)", status, c.status, body)
			}
			if c.status != "200 OK" && body != errJSON(msgHost) {
				t.Errorf("body %s", body)
			}
			if closed != c.wantClosed {
				t.Errorf("connection closed = %v, want %v", closed, c.wantClosed)
			}
		})
	}
}

func TestPanicRecovered(t *testing.T) {
	b := newFakeBackend()
	b.panicTree = true
	client := unixClient(startServer(t, b, fixedResolver("", nil)))
	if got := do(t, client, "GET", "/actors", ""); got.status != 500 || got.body != errJSON(msgInternal) {
		t.Errorf("panicking handler = %d %s", got.status, got.body)
	}
	if got := do(t, client, "GET", "/groups", ""); got.status != 200 {
		t.Errorf("after a panic = %d %s", got.status, got.body)
	}
}

func TestResolverPanicRecovered(t *testing.T) {
	var n atomic.Int32
	r := func(int) (string, error) {
		if n.Add(1) == 1 {
			panic("resolver exploded")
		}
		return "", nil
	}
	sock := startServer(t, newFakeBackend(), r)
	first := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	if got := do(t, first, "GET", "/groups", ""); got.status != 500 || got.body != errJSON(msgUnknownCaller) {
		t.Errorf("after resolver panic = %d %s", got.status, got.body)
	}
	if got := do(t, first, "GET", "/groups", ""); got.status != 200 {
		t.Errorf("next connection = %d %s", got.status, got.body)
	}
}

// TestPeerCredentials goes through the kernel: the test process connects to
// itself, so SO_PEERCRED must hand our own pid to the resolver.
func TestPeerCredentials(t *testing.T) {
	pids := make(chan int, 10)
	r := func(pid int) (string, error) {
		pids <- pid
		return "", nil
	}
	client := unixClient(startServer(t, newFakeBackend(), r))
	if got := do(t, client, "GET", "/groups", ""); got.status != 200 {
		t.Fatalf("GET /groups = %d %s", got.status, got.body)
	}
	if pid := <-pids; pid != os.Getpid() {
		t.Errorf("resolver got pid %d, want %d", pid, os.Getpid())
	}
}

// TestIdentityPerConnection checks the resolver runs once per connection
// and roles are looked up once per rolesTTL, not per request.
func TestIdentityPerConnection(t *testing.T) {
	var resolves atomic.Int32
	r := func(int) (string, error) {
		resolves.Add(1)
		return "app", nil
	}
	b := newFakeBackend()
	client := unixClient(startServer(t, b, r))
	for range 20 {
		if got := do(t, client, "POST", "/signal", `{"type":"ready"}`); got.status != 200 {
			t.Fatalf("signal = %d %s", got.status, got.body)
		}
	}
	if n := resolves.Load(); n != 1 {
		t.Errorf("resolver ran %d times on one connection", n)
	}
	if n := b.calls(); n != 1 {
		t.Errorf("roles looked up %d times on one connection", n)
	}
}

// TestRolesRefreshed checks a container that loses mgmt loses it on its
// open connection too, once rolesTTL has passed.
func TestRolesRefreshed(t *testing.T) {
	old := rolesTTL
	rolesTTL = 10 * time.Millisecond
	t.Cleanup(func() { rolesTTL = old })
	b := newFakeBackend()
	client := unixClient(startServer(t, b, fixedResolver("mgmt-ctr", nil)))
	if got := do(t, client, "GET", "/groups", ""); got.status != 200 {
		t.Fatalf("as mgmt = %d %s", got.status, got.body)
	}
	b.mu.Lock()
	b.containers[0].Roles = nil
	b.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	if got := do(t, client, "GET", "/groups", ""); got.status != 403 {
		t.Errorf("after losing mgmt = %d %s", got.status, got.body)
	}
}

func TestRolesBackendError(t *testing.T) {
	b := newFakeBackend()
	client := unixClient(startServer(t, b, fixedResolver("mgmt-ctr", nil)))
	b.mu.Lock()
	b.containersErr = errors.New("actor timeout")
	b.mu.Unlock()
	if got := do(t, client, "GET", "/groups", ""); got.status != 500 || got.body != errJSON(msgUnknownCaller) {
		t.Errorf("roles unavailable = %d %s", got.status, got.body)
	}
	// Failures are not cached.
	b.mu.Lock()
	b.containersErr = nil
	b.mu.Unlock()
	if got := do(t, client, "GET", "/groups", ""); got.status != 200 {
		t.Errorf("roles back = %d %s", got.status, got.body)
	}
}

// pipeListener hands out in-memory connections: a caller that is not on a
// unix socket, without opening any network socket.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (p *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.closed:
		return nil, net.ErrClosed
	}
}

func (p *pipeListener) Close() error   { p.once.Do(func() { close(p.closed) }); return nil }
func (p *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (p *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case p.conns <- server:
		return client, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func TestServeNotUnix(t *testing.T) {
	l := newPipeListener()
	s := New(newFakeBackend(), fixedResolver("", nil), slog.New(slog.NewTextHandler(io.Discard, nil)))
	go s.Serve(l)
	defer s.Close()
	client := &http.Client{Transport: &http.Transport{DialContext: l.dial}}
	req, _ := http.NewRequest("GET", "http://localhost/groups", nil)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 500 || string(b) != errJSON(msgUnknownCaller) {
		t.Errorf("non-unix caller = %d %s", res.StatusCode, b)
	}
}

func TestServeReturnsNilOnClose(t *testing.T) {
	l, err := Listen(socketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	s := New(newFakeBackend(), nil, nil)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	time.Sleep(10 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func TestListen(t *testing.T) {
	t.Run("creates parents, mode 0660", func(t *testing.T) {
		sock := filepath.Join(filepath.Dir(socketPath(t)), "a", "b", "pv-ctrl")
		l, err := Listen(sock)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
			t.Errorf("mode %v, want socket 0660", fi.Mode())
		}
	})
	t.Run("replaces a stale socket", func(t *testing.T) {
		sock := socketPath(t)
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		// Leave the file behind, as a crashed server would.
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
		l2, err := Listen(sock)
		if err != nil {
			t.Fatalf("Listen over stale socket: %v", err)
		}
		l2.Close()
	})
	t.Run("refuses a live socket", func(t *testing.T) {
		sock := socketPath(t)
		l, err := Listen(sock)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		if l2, err := Listen(sock); err == nil {
			l2.Close()
			t.Fatal("Listen took over a live socket")
		}
	})
	t.Run("refuses a regular file", func(t *testing.T) {
		sock := socketPath(t)
		if err := os.WriteFile(sock, []byte("keep me"), 0o600); err != nil {
			t.Fatal(err)
		}
		if l, err := Listen(sock); err == nil {
			l.Close()
			t.Fatal("Listen replaced a regular file")
		}
		if b, _ := os.ReadFile(sock); string(b) != "keep me" {
			t.Errorf("file changed: %q", b)
		}
	})
}

// BenchmarkGetGroups measures one keep-alive client (DESIGN.md: a bare
// net/http server does ~10k req/s).
func BenchmarkGetGroups(b *testing.B) {
	sock := filepath.Join(b.TempDir(), "s")
	l, err := Listen(sock)
	if err != nil {
		b.Fatal(err)
	}
	s := New(newFakeBackend(), fixedResolver("mgmt-ctr", nil), slog.New(slog.NewTextHandler(io.Discard, nil)))
	go s.Serve(l)
	defer s.Close()
	client := unixClient(sock)
	b.ResetTimer()
	for b.Loop() {
		res, err := client.Get("http://localhost/groups")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatal(res.Status)
		}
	}
}

func TestPutContainer(t *testing.T) {
	b := newFakeBackend()
	sock := startServer(t, b, fixedResolver("", nil))
	client := unixClient(sock)
	tests := []struct {
		name, body string
		err        error
		status     int
		reply      string
	}{
		{"stop", `{"action":"stop"}`, nil, 200, ""},
		{"no data", ``, nil, 400, errJSON("No data")},
		{"bad json", `{"action":`, nil, 400, errJSON("Invalid JSON")},
		{"no action", `{"verb":"stop"}`, nil, 400, errJSON("Missing 'action' field")},
		{"bad action", `{"action":"pause"}`, nil, 400, errJSON("Invalid action. Use 'start', 'stop', or 'restart'")},
		{"system container", `{"action":"stop"}`, &messages.ActionError{Container: "app", Action: "stop", Outcome: messages.NotAllowed}, 403,
			errJSON("Container has restart_policy 'system' and cannot be controlled via API")},
		{"unknown", `{"action":"start"}`, &messages.ActionError{Container: "app", Action: "start", Outcome: messages.NotFound}, 404, errJSON("Container not found")},
		{"invalid action", `{"action":"start"}`, &messages.ActionError{Container: "app", Action: "start", Outcome: messages.InvalidAction}, 400,
			errJSON("Invalid action. Use 'start', 'stop', or 'restart'")},
		{"state forbids", `{"action":"restart"}`, &messages.ActionError{Container: "app", Action: "restart", Outcome: messages.WrongState, Detail: "status RECOVERING"}, 400,
			errJSON("Container state does not allow restart")},
		{"start failure reported", `{"action":"start"}`, &messages.ActionError{Container: "app", Action: "start", Outcome: messages.StartFailed, Detail: "exec /sbin/init: no such file"}, 500,
			errJSON("container failed: exec /sbin/init: no such file")},
		{"start overtaken by a stop", `{"action":"start"}`, &messages.ActionError{Container: "app", Action: "start", Outcome: messages.Canceled, Detail: "stopped through the API"}, 409,
			errJSON("container start canceled: stopped through the API")},
		{"tree not answering", `{"action":"start"}`, errors.New("start container app: ask root: future: timeout"), 500,
			errJSON("start container app: ask root: future: timeout")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b.mu.Lock()
			b.actionErr = tc.err
			b.mu.Unlock()
			got := do(t, client, "PUT", "/containers/app", tc.body)
			if got.status != tc.status || (tc.reply != "" && got.body != tc.reply) {
				t.Errorf("got %d %s, want %d %s", got.status, got.body, tc.status, tc.reply)
			}
		})
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.actions) == 0 || b.actions[0] != "app:stop" {
		t.Errorf("backend calls: %v", b.actions)
	}
}

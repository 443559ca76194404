package ctrl

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// fakeBackend is a Backend with canned answers that records signals.
type fakeBackend struct {
	mu             sync.Mutex
	containers     []messages.ContainerInfo
	groups         []messages.GroupInfo
	tree           *messages.Node
	containersErr  error
	signalErr      error
	panicTree      bool
	signals        []string
	containerCalls int
	actions        []string
	actionErr      error
	// commands records RunRevision ("run REV", "run-commit REV") and
	// Power ("reboot MSG", "poweroff MSG") calls; cmdErr answers them.
	commands []string
	cmdErr   error
	revs     messages.RevisionsReply
	revsErr  error
	// cmdGate, when set, holds every command until it is closed.
	cmdGate chan struct{}
}

func (f *fakeBackend) RunRevision(rev string, commit bool) error {
	verb := "run"
	if commit {
		verb = "run-commit"
	}
	return f.command(verb + " " + rev)
}

func (f *fakeBackend) Power(poweroff bool, reason string) error {
	verb := "reboot"
	if poweroff {
		verb = "poweroff"
	}
	return f.command(verb + " " + reason)
}

func (f *fakeBackend) command(c string) error {
	f.mu.Lock()
	f.commands = append(f.commands, c)
	gate, err := f.cmdGate, f.cmdErr
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return err
}

// commandLog returns the commands carried out so far.
func (f *fakeBackend) commandLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.commands)
}

func (f *fakeBackend) Revisions() (*messages.RevisionsReply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.revs
	return &r, f.revsErr
}

func (f *fakeBackend) ContainerAction(name, action string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actions = append(f.actions, name+":"+action)
	return f.actionErr
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		containers: []messages.ContainerInfo{
			{Name: "mgmt-ctr", Group: "platform", Status: messages.StatusReady, Roles: []string{"mgmt"}},
			{Name: "app", Group: "app", Status: messages.StatusStarted, Roles: []string{}},
		},
		groups: []messages.GroupInfo{{Name: "platform", StatusGoal: "READY", RestartPolicy: "system", Status: messages.StatusReady}},
		tree:   &messages.Node{Path: "root", Kind: "root", Status: "running"},
	}
}

func (f *fakeBackend) Containers() ([]messages.ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.containerCalls++
	return f.containers, f.containersErr
}

func (f *fakeBackend) Groups() ([]messages.GroupInfo, error) { return f.groups, nil }

func (f *fakeBackend) Signal(container, typ, payload string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.signalErr != nil {
		return f.signalErr
	}
	f.signals = append(f.signals, container+" "+typ+" "+payload)
	return nil
}

func (f *fakeBackend) Tree() *messages.Node {
	if f.panicTree {
		panic("tree exploded")
	}
	return f.tree
}

func (f *fakeBackend) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.containerCalls
}

// fixedResolver identifies every caller as container ("" = host), or fails.
func fixedResolver(container string, err error) Resolver {
	return func(int) (string, error) { return container, err }
}

// socketPath returns a fresh socket path short enough for sun_path (108
// bytes): t.TempDir() when it fits, else a shorter temporary directory.
func socketPath(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pv-ctrl")
	if len(p) < 100 {
		return p
	}
	dir, err := os.MkdirTemp("", "ctrl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "pv-ctrl")
}

// startServer serves b on a fresh unix socket, with a fresh empty storage,
// until the test ends.
func startServer(t *testing.T, b Backend, r Resolver) string {
	t.Helper()
	return startServerWith(t, b, r, &Storage{Layout: storage.Layout{Root: t.TempDir()}, State: state.Options{AppEngine: true}})
}

// startServerWith is startServer with storage st (none when nil).
func startServerWith(t *testing.T, b Backend, r Resolver, st *Storage) string {
	t.Helper()
	s := New(b, r, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if st != nil {
		s.SetStorage(*st)
	}
	s.SetConfig(config.New())
	if err := s.SetMeta(t.TempDir(), t.TempDir()); err != nil {
		t.Fatal(err)
	}
	sock, _ := serve(t, s)
	return sock
}

// serve serves s on a fresh unix socket until stop is called or the test
// ends.
func serve(t testing.TB, s *Server) (sock string, stop func()) {
	t.Helper()
	sock = socketPath(t)
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return sock, stop
}

// serveTest serves s on a fresh unix socket until the test ends.
func serveTest(t testing.TB, s *Server) string {
	t.Helper()
	sock, _ := serve(t, s)
	return sock
}

// unixClient talks HTTP to sock, keeping connections alive.
func unixClient(sock string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		},
	}
}

type reply struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, c *http.Client, method, path, body string) reply {
	t.Helper()
	return send(t, c, method, path, body, int64(len(body)))
}

// doChunked is do without a Content-Length: the body is sent chunked, so
// a limit can only be enforced while it is read.
func doChunked(t *testing.T, c *http.Client, method, path, body string) reply {
	t.Helper()
	return send(t, c, method, path, body, -1)
}

func send(t *testing.T, c *http.Client, method, path, body string, length int64) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://localhost"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return reply{res.StatusCode, res.Header, string(b)}
}

// errJSON is the exact body of an error answer.
func errJSON(msg string) string {
	return `{"Error":"` + msg + `"}`
}

// sendEarly is send for a request the server may answer before it read
// the body, and close: the answer is read whatever became of the write,
// as pvcontrol does (Go's client may report the broken pipe of its write
// instead). length -1 sends the body chunked.
func sendEarly(t *testing.T, sock, method, path, body string, length int64) reply {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req, err := http.NewRequest(method, "http://localhost"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	if length < 0 {
		req.TransferEncoding = []string{"chunked"}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = req.Write(c) // an early answer cuts it short
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatalf("%s %s: read response: %v", method, path, err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	c.Close()
	<-done
	return reply{res.StatusCode, res.Header, string(b)}
}

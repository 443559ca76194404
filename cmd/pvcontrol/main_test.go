package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/pantavisor/pv/ctrl"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/update"
)

// t0 is the fixed "now" of every test.
var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func init() { now = func() time.Time { return t0 } }

// fakeBackend answers pv-ctrl with a small device: a mgmt container, a web
// container that just restarted, a db that stopped.
type fakeBackend struct {
	mu      sync.Mutex
	signals []string
	actions []string
	// commands records RunRevision and Power calls.
	commands []string
}

func (f *fakeBackend) RunRevision(rev string, commit bool) error {
	if rev == "locals/missing" {
		return fmt.Errorf("run %s: %w", rev, update.ErrUnknownRevision)
	}
	return f.command(fmt.Sprintf("run %s commit=%v", rev, commit))
}

func (f *fakeBackend) Power(poweroff bool, reason string) error {
	return f.command(fmt.Sprintf("power poweroff=%v %s", poweroff, reason))
}

func (f *fakeBackend) command(c string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = append(f.commands, c)
	return nil
}

// commandLog returns the RunRevision and Power calls so far.
func (f *fakeBackend) commandLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.commands)
}

func (f *fakeBackend) Revisions() (*messages.RevisionsReply, error) {
	return &messages.RevisionsReply{Running: "0", Committed: "0"}, nil
}

func (f *fakeBackend) ContainerAction(name, action string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actions = append(f.actions, name+":"+action)
	if name == "mgmt" {
		return &messages.ActionError{Container: name, Action: action, Outcome: messages.NotAllowed}
	}
	return nil
}

func (f *fakeBackend) Containers() ([]messages.ContainerInfo, error) {
	return []messages.ContainerInfo{
		{Name: "mgmt", Group: "platform", Status: messages.StatusReady, StatusGoal: "READY",
			RestartPolicy: "system", Pid: 311, UptimeSecs: 7380, Roles: []string{"mgmt"}},
		{Name: "web", Group: "app", Status: messages.StatusStarted, StatusGoal: "STARTED",
			RestartPolicy: "container", Pid: 412, UptimeSecs: 12, Roles: []string{},
			LastExit: &messages.Exit{Signal: 9, At: t0.Add(-14 * time.Second)}},
		{Name: "db", Group: "app", Status: messages.StatusStopped, StatusGoal: "STARTED",
			RestartPolicy: "container", Roles: []string{},
			LastExit: &messages.Exit{Code: 1, At: t0.Add(-185 * time.Second)}},
	}, nil
}

func (f *fakeBackend) Groups() ([]messages.GroupInfo, error) {
	return []messages.GroupInfo{
		{Name: "platform", StatusGoal: "READY", RestartPolicy: "system", Status: messages.StatusReady},
		{Name: "app", StatusGoal: "STARTED", RestartPolicy: "container", Status: messages.StatusStarting},
	}, nil
}

func (f *fakeBackend) Signal(container, typ, payload string) error {
	if typ != "ready" {
		return errors.New("signal refused: unknown type")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signals = append(f.signals, container+" "+typ+" "+payload)
	return nil
}

func (f *fakeBackend) Tree() *messages.Node {
	failedAt := t0.Add(-12 * time.Second)
	return &messages.Node{Path: "root", Kind: "root", Status: "running", Since: t0.Add(-2*time.Hour - 3*time.Minute),
		Info: map[string]string{"rev": "0"},
		Children: []*messages.Node{{
			Path: "root/rev-0", Kind: "revision", Status: "running", Since: t0.Add(-2*time.Hour - 3*time.Minute),
			Info: map[string]string{"rev": "0", "containers": "3"},
			Children: []*messages.Node{
				{Path: "root/rev-0/db", Kind: "container", Status: "STOPPED", Since: t0.Add(-3 * time.Minute),
					Info: map[string]string{"group": "app", "goal": "STARTED", "last_exit": "exited with code 1"}},
				{Path: "root/rev-0/mgmt", Kind: "container", Status: "READY", Since: t0.Add(-2*time.Hour - 3*time.Minute),
					Info: map[string]string{"group": "platform", "goal": "READY", "pid": "311"}},
				{Path: "root/rev-0/web", Kind: "container", Status: "STARTED", Since: t0.Add(-12 * time.Second),
					Restarts: 3, ActorRestarts: 1, LastFailure: "container web killed by signal 9", LastFailureAt: &failedAt,
					Info: map[string]string{"group": "app", "goal": "STARTED", "pid": "412"}},
				{Path: "root/rev-0/stuck", Status: "unresponsive", LastFailure: "future: timeout"},
			},
		}},
	}
}

// socketPath is a fresh socket path short enough for sun_path.
func socketPath(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pv-ctrl")
	if len(p) < 100 {
		return p
	}
	dir, err := os.MkdirTemp("", "pvc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "pv-ctrl")
}

// startCtrl serves b with a real ctrl.Server; every caller is container
// ("" = the host).
func startCtrl(t *testing.T, b ctrl.Backend, container string) string {
	t.Helper()
	return startCtrlWith(t, b, container, nil)
}

// startCtrlWith is startCtrl with the server's storage, when st is not nil.
func startCtrlWith(t *testing.T, b ctrl.Backend, container string, st *ctrl.Storage) string {
	t.Helper()
	sock := socketPath(t)
	l, err := ctrl.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	s := ctrl.New(b, func(int) (string, error) { return container, nil },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if st != nil {
		s.SetStorage(*st)
	}
	s.SetConfig(config.New())
	if err := s.SetMeta(t.TempDir(), t.TempDir()); err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return sock
}

// startStub serves h on a fresh socket, for answers ctrl does not give yet.
func startStub(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	sock := socketPath(t)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return sock
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestLsTable: ls, list and upstream's `containers ls|list` print the
// container table.
func TestLsTable(t *testing.T) {
	sock := startCtrl(t, &fakeBackend{}, "")
	for _, words := range [][]string{{"ls"}, {"list"}, {"containers", "ls"}, {"containers", "list"}} {
		word := strings.Join(words, " ")
		code, out, errs := runCmd(append([]string{"-s", sock}, words...)...)
		want := `NAME  GROUP     STATUS   GOAL     POLICY     PID  UPTIME  LAST-EXIT
mgmt  platform  READY    READY    system     311  2h03m   -
web   app       STARTED  STARTED  container  412  12s     signal 9, 14s ago
db    app       STOPPED  STARTED  container  -    -       code 1, 3m05s ago
`
		if code != 0 || out != want || errs != "" {
			t.Errorf("%s: exit %d, stderr %q, stdout:\n%s\nwant:\n%s", word, code, errs, out, want)
		}
	}
}

func TestGroupsTable(t *testing.T) {
	sock := startCtrl(t, &fakeBackend{}, "")
	code, out, _ := runCmd("-s", sock, "groups", "ls")
	want := `NAME      GOAL     POLICY     STATUS
platform  READY    system     READY
app       STARTED  container  STARTING
`
	if code != 0 || out != want {
		t.Errorf("exit %d, stdout:\n%s\nwant:\n%s", code, out, want)
	}
}

func TestTree(t *testing.T) {
	sock := startCtrl(t, &fakeBackend{}, "")
	code, out, errs := runCmd("-s", sock, "tree")
	want := `ACTOR      KIND       STATUS        RESTARTS  ACTOR-RESTARTS  UPTIME  INFO                                                   LAST-FAILURE
root       root       running       0         0               2h03m   rev=0                                                  -
  rev-0    revision   running       0         0               2h03m   containers=3 rev=0                                     -
    db     container  STOPPED       0         0               3m00s   goal=STARTED group=app last_exit="exited with code 1"  -
    mgmt   container  READY         0         0               2h03m   pid=311 goal=READY group=platform                      -
    web    container  STARTED       3         1               12s     pid=412 goal=STARTED group=app                         12s ago: container web killed by signal 9
    stuck  -          unresponsive  0         0               -       -                                                      future: timeout
`
	if code != 0 || out != want || errs != "" {
		t.Errorf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errs, out, want)
	}
}

// TestJSON checks --json prints the server's own JSON, indented, wherever
// the option is placed.
func TestJSON(t *testing.T) {
	sock := startCtrl(t, &fakeBackend{}, "")
	cases := []struct {
		args []string
		path string
	}{
		{[]string{"--json", "-s", sock, "ls"}, "/containers"},
		{[]string{"-s", sock, "ls", "--json"}, "/containers"},
		{[]string{"-s", sock, "groups", "--json", "ls"}, "/groups"},
		{[]string{"-json", "-s", sock, "tree"}, "/actors"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, out, errs := runCmd(c.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			raw := rawGet(t, sock, c.path)
			var want bytes.Buffer
			json.Indent(&want, raw, "", "  ")
			want.WriteByte('\n')
			if out != want.String() {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, want.String())
			}
		})
	}
}

func rawGet(t *testing.T, sock, path string) []byte {
	t.Helper()
	res, err := newClient(sock, false, io.Discard).do("GET", path, "", nil)
	if err != nil || res.status != 200 {
		t.Fatalf("GET %s: %v %v", path, err, res)
	}
	return res.body
}

func TestSignal(t *testing.T) {
	b := &fakeBackend{}
	sock := startCtrl(t, b, "web")
	if code, out, errs := runCmd("-s", sock, "signal", "ready", "up"); code != 0 || out != "" || errs != "" {
		t.Errorf("signal ready = %d %q %q", code, out, errs)
	}
	if code, _, _ := runCmd("-s", sock, "signal", "ready"); code != 0 {
		t.Errorf("signal ready without payload = %d", code)
	}
	b.mu.Lock()
	got := slices.Clone(b.signals)
	b.mu.Unlock()
	if !slices.Equal(got, []string{"web ready up", "web ready "}) {
		t.Errorf("signals = %q", got)
	}
	code, _, errs := runCmd("-s", sock, "signal", "alive")
	if code != 255 || errs != "pvcontrol: Signal not expected from this platform (HTTP 500)\n" {
		t.Errorf("signal alive = %d %q", code, errs)
	}
}

func TestServerErrors(t *testing.T) {
	app := startCtrl(t, &fakeBackend{}, "web")
	host := startCtrl(t, &fakeBackend{}, "")
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"not mgmt", []string{"-s", app, "ls"}, 255, "pvcontrol: Request not sent from mgmt platform (HTTP 403)\n"},
		{"not mgmt tree", []string{"-s", app, "tree", "--json"}, 255, "pvcontrol: Request not sent from mgmt platform (HTTP 403)\n"},
		{"host signal", []string{"-s", host, "signal", "ready"}, 255, "pvcontrol: Signal not expected from this platform (HTTP 500)\n"},
		{"containers start of a system container", []string{"-s", host, "containers", "start", "mgmt"}, 255,
			"pvcontrol: Container has restart_policy 'system' and cannot be controlled via API (HTTP 403)\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := runCmd(c.args...)
			if code != c.code || errs != c.stderr || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q", code, out, errs, c.code, c.stderr)
			}
		})
	}
}

func TestContainersAction(t *testing.T) {
	type seen struct{ method, path, ctype, body string }
	got := make(chan seen, 3)
	sock := startStub(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.EscapedPath(), r.Header.Get("Content-Type"), string(b)}
	})
	for _, action := range []string{"start", "stop", "restart"} {
		if code, _, errs := runCmd("-s", sock, "containers", action, "my app"); code != 0 {
			t.Fatalf("%s: exit %d %s", action, code, errs)
		}
		want := seen{"PUT", "/containers/my%20app", "application/json", `{"action":"` + action + `"}`}
		if s := <-got; s != want {
			t.Errorf("%s: request %+v, want %+v", action, s, want)
		}
	}
}

// Against the real server: the action reaches the backend, and a refusal
// comes back as the server's message with exit 255.
func TestContainersActionServer(t *testing.T) {
	b := &fakeBackend{}
	sock := startCtrl(t, b, "")
	if code, _, errs := runCmd("-s", sock, "containers", "stop", "web"); code != 0 {
		t.Fatalf("stop web: exit %d %s", code, errs)
	}
	code, _, errs := runCmd("-s", sock, "containers", "restart", "mgmt")
	if code != 255 || !strings.Contains(errs, "restart_policy 'system'") {
		t.Errorf("restart mgmt: exit %d %q", code, errs)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if strings.Join(b.actions, ",") != "web:stop,mgmt:restart" {
		t.Errorf("actions: %v", b.actions)
	}
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		status int
		body   string
		code   int
	}{
		{200, "", 0},
		{507, `{"Error":"Not enough disk space available"}`, 48},
		{422, `{"Error":"Object has bad checksum"}`, 60},
		{422, `{"Error":"State verification has failed"}`, 70},
		{409, `{"Error":"Cannot do this"}`, 255},
		{503, `{"Error":"Cannot do this operation while update is ongoing"}`, 75},
		{503, `{"Error":"Not enough disk space available"}`, 48},
		{204, ``, 255},
		{500, `not json`, 255},
	}
	for _, c := range cases {
		t.Run(http.StatusText(c.status)+" "+c.body, func(t *testing.T) {
			sock := startStub(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
			})
			if code, _, errs := runCmd("-s", sock, "containers", "stop", "x"); code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, c.code, errs)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"nothing", nil, "usage: pvcontrol"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"incomplete command", []string{"groups"}, `unknown command "groups"`},
		{"wrong sub-command", []string{"containers", "explode", "x"}, `unknown command "containers explode x"`},
		{"missing argument", []string{"containers", "start"}, "usage: pvcontrol containers start NAME"},
		{"extra argument", []string{"ls", "x"}, "usage: pvcontrol ls|list"},
		{"signal without type", []string{"signal"}, "usage: pvcontrol signal ready|alive [PAYLOAD]"},
		{"unknown option", []string{"-x", "ls"}, "unknown option -x"},
		{"socket without path", []string{"ls", "-s"}, "option -s needs a socket path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := runCmd(c.args...)
			if code != 2 || out != "" || !strings.Contains(errs, c.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errs, c.stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"ls", "-h"}} {
		code, out, errs := runCmd(args...)
		if code != 0 || errs != "" || !strings.Contains(out, "containers restart NAME") {
			t.Errorf("%q: exit %d, stderr %q, stdout %q", args, code, errs, out)
		}
	}
}

func TestConnectionFailure(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "absent")
	code, out, errs := runCmd("-s", sock, "ls")
	want := "pvcontrol: cannot reach control socket " + sock + ": dial unix " + sock + ": connect: no such file or directory\n"
	if code != 255 || out != "" || errs != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want 255, %q", code, out, errs, want)
	}
}

func TestVerbose(t *testing.T) {
	sock := startCtrl(t, &fakeBackend{}, "web")
	code, _, errs := runCmd("-v", "-s", sock, "signal", "ready")
	for _, want := range []string{"* socket " + sock, "> POST /signal", `> 29 bytes: {"type":"ready","payload":""}`, "< 200 OK (0 bytes)"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if code != 0 {
		t.Errorf("exit %d", code)
	}
}

func TestParseArgs(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want options
	}{
		{"plain", []string{"ls"}, options{words: []string{"ls"}}},
		{"options after command", []string{"groups", "ls", "--json", "-s", "/x", "-v"},
			options{sock: "/x", json: true, verbose: true, words: []string{"groups", "ls"}}},
		{"socket with =", []string{"-s=/y", "tree"}, options{sock: "/y", words: []string{"tree"}}},
		{"double dash ends options", []string{"signal", "ready", "--", "--json"},
			options{words: []string{"signal", "ready", "--json"}}},
		{"negative number is an argument", []string{"objects", "put", "-1024", "abc"},
			options{words: []string{"objects", "put", "-1024", "abc"}}},
		{"commit message", []string{"-m", "why", "steps", "put", "f", "locals/x"},
			options{commitMsg: "why", words: []string{"steps", "put", "f", "locals/x"}}},
		{"lone dash is an argument", []string{"objects", "put", "-"}, options{words: []string{"objects", "put", "-"}}},
		{"output file", []string{"-f", "/tmp/o", "objects", "get", "abc"},
			options{output: "/tmp/o", words: []string{"objects", "get", "abc"}}},
		{"output file with =", []string{"ls", "--output=/tmp/o"}, options{output: "/tmp/o", words: []string{"ls"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseArgs(c.args)
			if err != nil || got.sock != c.want.sock || got.json != c.want.json ||
				got.verbose != c.want.verbose || got.commitMsg != c.want.commitMsg || got.output != c.want.output ||
				!slices.Equal(got.words, c.want.words) {
				t.Errorf("parseArgs = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

func TestPickSocket(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	if got := pickSocket([]string{a, b, c}); got != c {
		t.Errorf("none exists: %s, want the last", got)
	}
	os.WriteFile(b, nil, 0o600)
	if got := pickSocket([]string{a, b, c}); got != b {
		t.Errorf("second exists: %s", got)
	}
}

func TestDuration(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{59 * time.Second, "59s"},
		{60 * time.Second, "1m00s"},
		{185 * time.Second, "3m05s"},
		{2*time.Hour + 3*time.Minute + 59*time.Second, "2h03m"},
		{4*24*time.Hour + 7*time.Hour, "4d07h"},
	}
	for _, c := range cases {
		if got := duration(c.d); got != c.want {
			t.Errorf("duration(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

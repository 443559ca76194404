package ctrl

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/storage"
	"github.com/pantavisor/pv/update"
)

// command is a POST /commands body.
func command(op, payload string) string {
	return fmt.Sprintf(`{"op":%q,"payload":%q}`, op, payload)
}

func TestCommands(t *testing.T) {
	cases := []struct {
		name, body string
		err        error // the backend's answer
		status     int
		resp       string // exact body, when set
		retry      string // Retry-After
		commands   []string
	}{
		{"run", command("LOCAL_RUN", "locals/foo"), nil, 200, "", "", []string{"run locals/foo"}},
		{"run commit", command("LOCAL_RUN_COMMIT", "locals/foo"), nil, 200, "", "", []string{"run-commit locals/foo"}},
		{"reboot", command("REBOOT_DEVICE", "maintenance"), nil, 200, "", "", []string{"reboot maintenance"}},
		{"poweroff", command("POWEROFF_DEVICE", ""), nil, 200, "", "", []string{"poweroff "}},
		{"no payload", `{"op":"REBOOT_DEVICE"}`, nil, 200, "", "", []string{"reboot "}},

		{"update ongoing", command("LOCAL_RUN", "locals/foo"), fmt.Errorf("run: %w", update.ErrUpdateOngoing),
			503, errJSON(update.MsgUpdateOngoing), "600", []string{"run locals/foo"}},
		{"reboot while updating", command("REBOOT_DEVICE", ""), update.ErrUpdateOngoing,
			503, errJSON(update.MsgUpdateOngoing), "600", []string{"reboot "}},
		{"unknown revision", command("LOCAL_RUN", "locals/none"), fmt.Errorf("run locals/none: %w", update.ErrUnknownRevision),
			404, errJSON(msgNoResource), "", []string{"run locals/none"}},
		{"invalid revision", command("LOCAL_RUN", "locals/bad"), fmt.Errorf("run locals/bad: %w: no web/run.json", update.ErrInvalidRevision),
			422, errJSON("run locals/bad: invalid revision: no web/run.json"), "", []string{"run locals/bad"}},
		{"no updates", command("LOCAL_RUN_COMMIT", "1"), fmt.Errorf("run 1: %w", messages.ErrNoUpdates),
			500, errJSON(msgNoUpdates), "", []string{"run-commit 1"}},
		{"unusable bootloader", command("LOCAL_RUN", "1"),
			fmt.Errorf("run 1: revisions: %w", fmt.Errorf("%w: new bootloader: uboot-ab is not implemented", bootloader.ErrUnusable)),
			409, errJSON("run 1: revisions: bootloader unusable: new bootloader: uboot-ab is not implemented"), "", []string{"run 1"}},
		{"other failure", command("LOCAL_RUN", "1"), errors.New("actor timeout"),
			500, errJSON(msgInternal), "", []string{"run 1"}},

		{"bad json", `{"op":`, nil, 400, errJSON(msgCommandFormat), "", nil},
		{"not an object", `["LOCAL_RUN"]`, nil, 400, errJSON(msgCommandFormat), "", nil},
		{"payload not a string", `{"op":"LOCAL_RUN","payload":1}`, nil, 400, errJSON(msgCommandFormat), "", nil},
		{"unknown op", command("SELF_DESTRUCT", ""), nil, 400, errJSON(msgNoCommand + `: \"SELF_DESTRUCT\"`), "", nil},
		{"no op", `{}`, nil, 400, errJSON(msgNoCommand + `: \"\"`), "", nil},
		{"prefix is not an op", command("LOCAL", "1"), nil, 400, "", "", nil},
		{"lower case is not an op", command("local_run", "1"), nil, 400, "", "", nil},

		{"metadata", command("UPDATE_METADATA", "{}"), nil, 409, "", "", nil},
		{"go remote", command("GO_REMOTE", ""), nil, 409, "", "", nil},
		{"defer reboot", command("DEFER_REBOOT", "60"), nil, 409, "", "", nil},
		{"enable ssh", command("ENABLE_SSH", ""), nil, 501, "", "", nil},
		{"disable ssh", command("DISABLE_SSH", ""), nil, 501, "", "", nil},
		{"try once", command("TRY_ONCE", "1"), nil, 200, "", "", nil},
		{"local apply", command("LOCAL_APPLY", ""), nil, 200, "", "", nil},
		{"xconnect graph", command("XCONNECT_GRAPH", ""), nil, 200, "", "", nil},
		// The server of this test was given no way to re-execute.
		{"reexec without PID 1", command("REEXEC_SUPERVISOR", ""), nil, 501, "", "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newFakeBackend()
			b.cmdErr = c.err
			client := unixClient(startServer(t, b, fixedResolver("", nil)))
			got := do(t, client, "POST", "/commands", c.body)
			if got.status != c.status || (c.resp != "" && got.body != c.resp) {
				t.Errorf("answer %d %s, want %d %s", got.status, got.body, c.status, c.resp)
			}
			if ra := got.header.Get("Retry-After"); ra != c.retry {
				t.Errorf("Retry-After %q, want %q", ra, c.retry)
			}
			if cmds := b.commandLog(); !slices.Equal(cmds, c.commands) {
				t.Errorf("backend commands %q, want %q", cmds, c.commands)
			}
			// A refused op is named in the answer.
			var req commandRequest
			if json.Unmarshal([]byte(c.body), &req) == nil && req.Op != "" && c.err == nil && c.status != 200 &&
				!strings.Contains(got.body, req.Op) {
				t.Errorf("answer %s does not name the op %s", got.body, req.Op)
			}
		})
	}
}

// REEXEC_SUPERVISOR answers first, then asks for the re-execution. The
// answer is on the client's side of the socket before it is asked: the
// re-execution ends the process and every connection with it.
func TestReexecCommand(t *testing.T) {
	b := newFakeBackend()
	asked := make(chan string, 1)
	srv := New(b, fixedResolver("", nil), slog.New(slog.NewTextHandler(io.Discard, nil)))
	sock := serveTest(t, srv)
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var waiting bool
	srv.SetReexec(func(why string) {
		raw.Control(func(fd uintptr) {
			var buf [1]byte
			n, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			waiting = err == nil && n > 0
		})
		asked <- why
	})
	body := command("REEXEC_SUPERVISOR", "new binary")
	fmt.Fprintf(conn, "POST /commands HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	select {
	case why := <-asked:
		if why != "new binary" {
			t.Errorf("re-execution asked for %q", why)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("re-execution never asked for")
	}
	if !waiting {
		t.Error("re-execution asked for before the answer reached the client")
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("answer %d, want 200", resp.StatusCode)
	}
}

// TestCommandBusy: one command at a time, as upstream.
func TestCommandBusy(t *testing.T) {
	b := newFakeBackend()
	b.cmdGate = make(chan struct{})
	client := unixClient(startServer(t, b, fixedResolver("", nil)))
	done := make(chan reply, 1)
	go func() { done <- do(t, client, "POST", "/commands", command("LOCAL_RUN", "locals/slow")) }()
	waitFor(t, func() bool { return len(b.commandLog()) == 1 })
	got := do(t, client, "POST", "/commands", command("REBOOT_DEVICE", ""))
	if got.status != 503 || got.body != errJSON(msgCommandBusy) || got.header.Get("Retry-After") != "120" {
		t.Errorf("second command = %d %s %v", got.status, got.body, got.header)
	}
	close(b.cmdGate)
	if first := <-done; first.status != 200 {
		t.Errorf("first command = %d %s", first.status, first.body)
	}
	if got := do(t, client, "POST", "/commands", command("REBOOT_DEVICE", "")); got.status != 200 {
		t.Errorf("command after the first = %d %s", got.status, got.body)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
	}
}

// installRev stores the objects of a state with the given file contents and
// installs it as rev; it returns the state.
func installRev(t *testing.T, l storage.Layout, rev, conf, root string) string {
	t.Helper()
	for _, data := range []string{conf, root} {
		if _, err := l.PutObject(shaOf(data), strings.NewReader(data), 0); err != nil {
			t.Fatal(err)
		}
	}
	st := stateWith(shaOf(conf), shaOf(root))
	if err := l.InstallTrail(rev, []byte(st), storage.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestRunGC(t *testing.T) {
	st := newStorage(t)
	l := st.Layout
	installRev(t, l, "0", "conf", "factory root")
	installRev(t, l, "1", "conf", "root 1")
	installRev(t, l, "2", "conf", "root 2")
	installRev(t, l, "locals/old", "conf", "old root")
	if _, err := l.PutObject(shaOf("stray"), strings.NewReader("stray"), 0); err != nil {
		t.Fatal(err)
	}
	b := newFakeBackend()
	b.revs = messages.RevisionsReply{Running: "2", Committed: "1", Tried: "2"}
	client := unixClient(startServerWith(t, b, fixedResolver("", nil), st))

	// RUN_GC answers as every command does: 200, no body.
	if got := do(t, client, "POST", "/commands", command("RUN_GC", "")); got.status != 200 || got.body != "" {
		t.Fatalf("RUN_GC = %d %q, want 200 and no body", got.status, got.body)
	}
	if revs, err := l.Revisions(); err != nil || !slices.Equal(revs, []string{"0", "1", "2"}) {
		t.Errorf("revisions after GC = %v, %v", revs, err)
	}
	for data, want := range map[string]bool{"conf": true, "factory root": true, "root 1": true, "root 2": true, "old root": false, "stray": false} {
		if err := l.Verify(shaOf(data)); (err == nil) != want {
			t.Errorf("object %q kept = %v, want %v", data, err == nil, want)
		}
	}

	b.revsErr = errors.New("root unresponsive")
	if got := do(t, client, "POST", "/commands", command("RUN_GC", "")); got.status != 500 {
		t.Errorf("RUN_GC without revisions = %d %s", got.status, got.body)
	}
	if revs, _ := l.Revisions(); len(revs) != 3 {
		t.Errorf("revisions after a refused GC = %v", revs)
	}
}

// TestRunGCDuringUpload: GC is refused while an object is being uploaded,
// as it would remove the object before a revision refers to it.
func TestRunGCDuringUpload(t *testing.T) {
	st := newStorage(t)
	sock := startServerWith(t, newFakeBackend(), fixedResolver("", nil), st)
	client := unixClient(sock)
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const data = "uploaded slowly"
	fmt.Fprintf(conn, "PUT /objects/%s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s", shaOf(data), len(data), data[:5])
	var got reply
	waitFor(t, func() bool {
		got = do(t, client, "POST", "/commands", command("RUN_GC", ""))
		return got.status != http.StatusOK
	})
	if got.status != 503 || got.body != errJSON(msgStorageBusy) || got.header.Get("Retry-After") == "" {
		t.Errorf("GC during an upload = %d %s", got.status, got.body)
	}
	fmt.Fprint(conn, data[5:])
	buf := make([]byte, 512)
	n, _ := conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("upload = %q", buf[:n])
	}
	if got := do(t, client, "POST", "/commands", command("RUN_GC", "")); got.status != 200 {
		t.Errorf("GC after the upload = %d %s", got.status, got.body)
	}
}

func TestMakeFactory(t *testing.T) {
	cases := []struct {
		name, payload string
		revs          messages.RevisionsReply
		cmdErr        error
		status        int
		factory       string // the state of trail 0 afterwards: "old" or "new"
		commands      []string
	}{
		{"running", "", messages.RevisionsReply{Running: "locals/new"}, nil, 200, "new", []string{"run-commit 0"}},
		{"named", "locals/new", messages.RevisionsReply{Running: "0"}, nil, 200, "new", []string{"run-commit 0"}},
		{"factory itself", "0", messages.RevisionsReply{Running: "locals/new"}, nil, 200, "old", []string{"run-commit 0"}},
		{"updating", "locals/new", messages.RevisionsReply{Running: "0", Tried: "locals/new", Updating: true}, nil, 503, "old", nil},
		{"unknown", "locals/none", messages.RevisionsReply{Running: "0"}, nil, 404, "old", nil},
		{"bad name", "../x", messages.RevisionsReply{Running: "0"}, nil, 422, "old", nil},
		{"nothing running", "", messages.RevisionsReply{}, nil, 409, "old", nil},
		{"run refused", "locals/new", messages.RevisionsReply{Running: "0"}, update.ErrUpdateOngoing, 503, "new", []string{"run-commit 0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := newStorage(t)
			l := st.Layout
			states := map[string]string{
				"old": installRev(t, l, "0", "conf", "factory root"),
				"new": installRev(t, l, "locals/new", "new conf", "new root"),
			}
			b := newFakeBackend()
			b.revs, b.cmdErr = c.revs, c.cmdErr
			client := unixClient(startServerWith(t, b, fixedResolver("", nil), st))
			got := do(t, client, "POST", "/commands", command("MAKE_FACTORY", c.payload))
			if got.status != c.status {
				t.Errorf("MAKE_FACTORY = %d %s, want %d", got.status, got.body, c.status)
			}
			if c.status == 503 && (got.body != errJSON(update.MsgUpdateOngoing) || got.header.Get("Retry-After") == "") {
				t.Errorf("refusal = %s %v", got.body, got.header)
			}
			if data, err := l.ReadState("0"); err != nil || string(data) != states[c.factory] {
				t.Errorf("trail 0 = %s, %v; want the %s state", data, err, c.factory)
			}
			if err := l.CheckTrail("0"); err != nil {
				t.Errorf("trail 0: %v", err)
			}
			if tmps := files(t, l.Trails()); slices.ContainsFunc(tmps, func(f string) bool { return strings.HasPrefix(f, ".") }) {
				t.Errorf("temporaries left in trails/: %v", tmps)
			}
			if cmds := b.commandLog(); !slices.Equal(cmds, c.commands) {
				t.Errorf("backend commands %q, want %q", cmds, c.commands)
			}
		})
	}
}

func TestCommandsWithoutStorage(t *testing.T) {
	client := unixClient(startServerWith(t, newFakeBackend(), fixedResolver("", nil), nil))
	for _, op := range []string{"RUN_GC", "MAKE_FACTORY"} {
		if got := do(t, client, "POST", "/commands", command(op, "")); got.status != 500 || got.body != errJSON(msgNoStorage) {
			t.Errorf("%s = %d %s", op, got.status, got.body)
		}
	}
}

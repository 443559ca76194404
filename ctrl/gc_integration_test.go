//go:build integration

package ctrl

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// storageWithOldRevision is a storage on a tmpfs of size with the
// factory revision and an old revision 1, its update over (DONE), whose
// root object (returned) is oldSize bytes.
func storageWithOldRevision(t *testing.T, size string, oldSize int) (*Storage, string) {
	t.Helper()
	st := &Storage{Layout: storage.Layout{Root: isolated.Tmpfs(t, size)}, State: state.Options{AppEngine: true}}
	installRev(t, st.Layout, "0", "conf", "factory root")
	oldRoot := pattern("old root ", oldSize)
	installRev(t, st.Layout, "1", "conf", oldRoot)
	finish(t, st.Layout, "1")
	return st, oldRoot
}

// serveRunning serves st with settings, the device running and committed
// to rev: the server's log and its socket.
func serveRunning(t *testing.T, st *Storage, rev string, settings map[string]string) (*logBuffer, string) {
	t.Helper()
	b := newFakeBackend()
	b.revs = messages.RevisionsReply{Running: rev, Committed: rev}
	s, logs := gcServer(t, b, st, settings)
	return logs, serveTest(t, s)
}

// pattern is n bytes that no other object of the tests shares.
func pattern(seed string, n int) string {
	return strings.Repeat(seed, n/len(seed)+1)[:n]
}

// space is the storage's free space now.
func space(t *testing.T, l storage.Layout) storage.Space {
	t.Helper()
	sp, err := storage.StatSpace(l.Root)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// TestReserveOnRealFilesystem uploads to a 4 MiB tmpfs with 10 %
// reserved, the device running revision 2 with an old revision 1 beside
// it. (a) An object that fits only once revision 1 is gone is stored
// after an automatic GC removed it. (b) Objects of a local update whose
// step is not uploaded yet are put, then an object that the filesystem
// could hold but only by eating into the reserve is refused with 507,
// with and without a Content-Length: nothing of it is left, the reserve
// is intact, the pending objects (and (a)'s, whose step is not there
// either) survived the GC that upload ran, and their step installs.
func TestReserveOnRealFilesystem(t *testing.T) {
	const kib = 1 << 10
	st, oldRoot := storageWithOldRevision(t, "4m", 1536*kib)
	l := st.Layout
	installRev(t, l, "2", "conf", "running root")
	logs, sock := serveRunning(t, st, "2", map[string]string{config.PVStorageGCReserved: "10"})
	client := unixClient(sock)

	// (a) More than the free space: it fits only after the GC.
	sp := space(t, l)
	big := pattern("new root ", int(sp.Free)+256*kib)
	if sp.Fits(int64(len(big)), 10) || !(storage.Space{Free: sp.Free + int64(len(oldRoot)), Total: sp.Total}).Fits(int64(len(big)), 10) {
		t.Fatalf("bad set-up: %d bytes with %+v", len(big), sp)
	}
	if got := do(t, client, "PUT", "/objects/"+shaOf(big), big); got.status != 200 {
		t.Fatalf("object that fits after GC = %d %s\n%s", got.status, got.body, logs)
	}
	if revs, _ := l.Revisions(); strings.Join(revs, " ") != "0 2" {
		t.Errorf("revisions after the automatic GC = %v, want 0 2", revs)
	}
	if _, err := os.Stat(l.Object(shaOf(oldRoot))); !os.IsNotExist(err) {
		t.Errorf("revision 1's object is still there: %v", err)
	}
	if err := l.Verify(shaOf(big)); err != nil {
		t.Errorf("the new object: %v", err)
	}
	if !strings.Contains(logs.String(), "storage garbage collected automatically") {
		t.Errorf("the GC is not logged:\n%s", logs)
	}

	// (b) A local update's objects, uploaded before its step.
	pendingConf, pendingRoot := "pending conf", pattern("pending root ", 20*kib)
	for _, data := range []string{pendingConf, pendingRoot} {
		if got := do(t, client, "PUT", "/objects/"+shaOf(data), data); got.status != 200 {
			t.Fatalf("pending object = %d %s", got.status, got.body)
		}
	}
	sp = space(t, l)
	reserve := sp.Percent(10)
	// The filesystem has room for it, the reserve does not.
	over := pattern("over ", int(sp.Available(10)+reserve/2))
	for _, chunked := range []bool{false, true} {
		length := int64(len(over))
		if chunked {
			length = -1
		}
		got := sendEarly(t, sock, "PUT", "/objects/"+shaOf(over), over, length)
		if got.status != 507 || got.body != errJSON(msgNoSpace) {
			t.Errorf("chunked %v: an object in the reserve = %d %s", chunked, got.status, got.body)
		}
		if fs := files(t, l.Objects()); len(fs) != 6 {
			t.Errorf("chunked %v: objects/ holds %q, want the 6 there before", chunked, fs)
		}
		if _, err := os.Stat(l.Object(shaOf(over))); !os.IsNotExist(err) {
			t.Errorf("chunked %v: the refused object is there: %v", chunked, err)
		}
		if now := space(t, l); now.Free < reserve {
			t.Errorf("chunked %v: free %d below the reserve %d", chunked, now.Free, reserve)
		}
	}
	want := fmt.Sprintf("Space required %d B", len(over))
	if !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), shaOf(over)) {
		t.Errorf("the log does not say %q naming the object:\n%s", want, logs)
	}
	// (a)'s object too: its step is not uploaded either.
	for _, data := range []string{pendingConf, pendingRoot, big} {
		if err := l.Verify(shaOf(data)); err != nil {
			t.Errorf("a pending object is gone: %v", err)
		}
	}
	if got := do(t, client, "PUT", "/steps/locals/pending", stateWith(shaOf(pendingConf), shaOf(pendingRoot))); got.status != 200 {
		t.Errorf("the pending step = %d %s", got.status, got.body)
	}
}

// TestThresholdGCOnRealFilesystem watches an 8 MiB tmpfs with a threshold
// of 50 %: above it nothing is collected; an upload takes the free space
// below it, and the GC waits out the defer window after that upload,
// then removes the old revision.
func TestThresholdGCOnRealFilesystem(t *testing.T) {
	const kib = 1 << 10
	st, _ := storageWithOldRevision(t, "8m", 1024*kib)
	l := st.Layout
	b := newFakeBackend()
	b.revs = messages.RevisionsReply{Running: "0", Committed: "0"}
	s, logs := gcServer(t, b, st, map[string]string{config.PVStorageGCThreshold: "50",
		config.PVStorageGCDeferTime: "2"})
	client := unixClient(serveTest(t, s))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.WatchStorage(ctx, 20*time.Millisecond) }()
	defer func() { cancel(); <-done }()

	revision1 := func() bool { _, err := os.Stat(l.Trail("1")); return err == nil }
	if space(t, l).Below(50) {
		t.Fatalf("bad set-up: %+v", space(t, l))
	}
	time.Sleep(300 * time.Millisecond)
	if !revision1() {
		t.Fatal("collected above the threshold")
	}

	// 3.5 MiB more: below 50 % free.
	data := pattern("upload ", 3584*kib)
	uploaded := time.Now()
	if got := do(t, client, "PUT", "/objects/"+shaOf(data), data); got.status != 200 {
		t.Fatalf("upload = %d %s", got.status, got.body)
	}
	if !space(t, l).Below(50) {
		t.Fatalf("bad set-up: not below 50 %% after the upload: %+v", space(t, l))
	}
	time.Sleep(time.Second)
	if !revision1() {
		t.Fatalf("collected %v after an upload, within the defer window of 2 s", time.Since(uploaded))
	}
	collected := func() bool { return strings.Contains(logs.String(), "storage garbage collected automatically") }
	for deadline := time.Now().Add(5 * time.Second); !collected(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not collected %v after the upload:\n%s", time.Since(uploaded), logs)
		}
	}
	if d := time.Since(uploaded); d < 2*time.Second {
		t.Errorf("collected %v after the upload, within the defer window", d)
	}
	if revision1() {
		t.Errorf("revision 1 is still there after the GC:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "below 50 %") {
		t.Errorf("the GC's log does not say why:\n%s", logs)
	}
	// Collected once: nothing changed since.
	time.Sleep(200 * time.Millisecond)
	if n := strings.Count(logs.String(), "storage garbage collected automatically"); n != 1 {
		t.Errorf("%d GCs, want 1:\n%s", n, logs)
	}
}

// oldRevisionServer is storageWithOldRevision served with reserved %
// reserved and the given settings, the device running and committed to
// "0" (b, when not nil, is the backend): the storage, the server, its
// log and its socket.
func oldRevisionServer(t *testing.T, size string, oldSize int, b *fakeBackend, reserved string, settings ...string) (*Storage, string, *logBuffer, string) {
	t.Helper()
	st, oldRoot := storageWithOldRevision(t, size, oldSize)
	if b == nil {
		b = newFakeBackend()
	}
	b.revs = messages.RevisionsReply{Running: "0", Committed: "0"}
	cfg := map[string]string{config.PVStorageGCReserved: reserved}
	for i := 0; i+1 < len(settings); i += 2 {
		cfg[settings[i]] = settings[i+1]
	}
	s, logs := gcServer(t, b, st, cfg)
	return st, oldRoot, logs, serveTest(t, s)
}

// TestDeferTimeZeroKeepsPendingObjects: with
// PV_STORAGE_GC_THRESHOLD_DEFERTIME 0 (the threshold GC acts at once) a
// local update's object put a moment before survives the GC the next
// object runs, and the step that refers to both is installed: no window
// protects them, the GC removes only what it made unreferenced.
func TestDeferTimeZeroKeepsPendingObjects(t *testing.T) {
	const kib = 1 << 10
	st, _, logs, sock := oldRevisionServer(t, "4m", 1536*kib, nil, "10", config.PVStorageGCDeferTime, "0")
	l := st.Layout
	client := unixClient(sock)
	conf := "zero window conf"
	if got := do(t, client, "PUT", "/objects/"+shaOf(conf), conf); got.status != 200 {
		t.Fatalf("object = %d %s", got.status, got.body)
	}
	root := pattern("zero window root ", int(space(t, l).Available(10))+256*kib)
	if got := do(t, client, "PUT", "/objects/"+shaOf(root), root); got.status != 200 {
		t.Fatalf("object that fits after GC = %d %s\n%s", got.status, got.body, logs)
	}
	if got := do(t, client, "PUT", "/steps/locals/zero", stateWith(shaOf(conf), shaOf(root))); got.status != 200 {
		t.Errorf("the step, its objects put a moment before = %d %s", got.status, got.body)
	}
}

// TestPendingStepSurvivesClockJump: a device without an RTC sets its
// clock years forward (NTP) after a local revision's step was put and
// before its LOCAL_RUN (simulated by moving the trail's and the objects'
// times back). An object that needs the automatic GC then removes the
// old finished revision, never the step (its progress is NEW) nor its
// objects.
func TestPendingStepSurvivesClockJump(t *testing.T) {
	const kib = 1 << 10
	st, _, logs, sock := oldRevisionServer(t, "4m", 1536*kib, nil, "10")
	l := st.Layout
	client := unixClient(sock)

	conf, root := "pending conf", pattern("pending root ", 32*kib)
	for _, data := range []string{conf, root} {
		if got := do(t, client, "PUT", "/objects/"+shaOf(data), data); got.status != 200 {
			t.Fatalf("object = %d %s", got.status, got.body)
		}
	}
	if got := do(t, client, "PUT", "/steps/locals/pending", stateWith(shaOf(conf), shaOf(root))); got.status != 200 {
		t.Fatalf("step = %d %s", got.status, got.body)
	}
	// The clock jumps five years forward.
	jumped := time.Now().AddDate(-5, 0, 0)
	for _, p := range []string{l.Trail("locals/pending"), l.Object(shaOf(conf)), l.Object(shaOf(root))} {
		if err := os.Chtimes(p, jumped, jumped); err != nil {
			t.Fatal(err)
		}
	}
	sp := space(t, l)
	big := pattern("another ", int(sp.Available(10))+256*kib)
	if got := do(t, client, "PUT", "/objects/"+shaOf(big), big); got.status != 200 {
		t.Fatalf("object that fits after GC = %d %s\n%s", got.status, got.body, logs)
	}
	if _, err := os.Stat(l.Trail("locals/pending")); err != nil {
		t.Errorf("the step put a second ago, not yet run, was removed by the automatic GC after a clock jump: %v\n%s", err, logs)
	}
	for _, data := range []string{conf, root} {
		if err := l.Verify(shaOf(data)); err != nil {
			t.Errorf("the step's object was removed: %v", err)
		}
	}
	if exists(l.Trail("1")) {
		t.Errorf("the finished revision 1 was not collected:\n%s", logs)
	}
}

// TestPvcontrolEarly507: upstream's pvcontrol (sh + curl) gets
// the early 507 whole: exit code 48 and the JSON on stderr, for a small
// object (no Expect), objects from 1 MiB up (curl's Expect: 100-continue)
// and one from stdin with its size (-SIZE).
func TestPvcontrolEarly507(t *testing.T) {
	needTools(t, "sh", "curl")
	st := &Storage{Layout: storage.Layout{Root: isolated.Tmpfs(t, "1m")}, State: state.Options{AppEngine: true}}
	b := newFakeBackend()
	s, _ := gcServer(t, b, st, nil)
	sock := serveTest(t, s)
	dir := t.TempDir()
	for _, size := range []int{1000 << 10, 2 << 20, 64 << 20} {
		data := bytes.Repeat([]byte{byte(size)}, size)
		file := filepath.Join(dir, fmt.Sprint(size))
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sha := shaOf(string(data))
		code, out, errOut := runPvcontrol(t, sock, "objects", "put", file, sha)
		if code != 48 || errOut != errJSON(msgNoSpace)+"\n" {
			t.Errorf("objects put of %d B on 1 MiB: exit %d, stdout %q, stderr %q", size, code, out, errOut)
		}
		script, _ := filepath.Abs(upstreamPvcontrol)
		cmd := exec.Command("sh", script, "-s", sock, "objects", "put", fmt.Sprintf("-%d", size), sha)
		cmd.Env = append(os.Environ(), "CURL_CMD=curl")
		cmd.Stdin = bytes.NewReader(data)
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 48 || se.String() != errJSON(msgNoSpace)+"\n" {
			t.Errorf("objects put -%d from stdin on 1 MiB: %v, stdout %q, stderr %q", size, err, so.String(), se.String())
		}
	}
	if fs := files(t, st.Layout.Objects()); len(fs) != 0 {
		t.Errorf("objects/ holds %q", fs)
	}
}

// TestPvcontrolMidBody507: the guard stops an upload in the middle
// of its body (another writer, here a file standing for logs, took the
// room after the upload was admitted). Upstream's pvcontrol, still
// sending, must get the 507: exit code 48 and the JSON.
func TestPvcontrolMidBody507(t *testing.T) {
	needTools(t, "sh", "curl")
	root := isolated.Tmpfs(t, "64m")
	st := &Storage{Layout: storage.Layout{Root: root}, State: state.Options{AppEngine: true}}
	s, logs := gcServer(t, newFakeBackend(), st, nil)
	sock := serveTest(t, s)

	const size = 32 << 20
	data := bytes.Repeat([]byte{'m'}, size)
	script, _ := filepath.Abs(upstreamPvcontrol)
	cmd := exec.Command("sh", script, "-s", sock, "objects", "put", fmt.Sprintf("-%d", size), shaOf(string(data)))
	cmd.Env = append(os.Environ(), "CURL_CMD=curl")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Write(data[:1<<20]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	// Logs take all but 8 MiB above the reserve.
	sp := space(t, st.Layout)
	if err := os.WriteFile(filepath.Join(root, "logs-filler"), make([]byte, sp.Available(5)-8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = in.Write(data[1<<20:])
		in.Close()
	}()
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 48 || se.String() != errJSON(msgNoSpace)+"\n" {
		t.Errorf("objects put stopped mid-body: %v, stdout %q, stderr %q\n%s", err, so.String(), se.String(), logs)
	}
	if !strings.Contains(logs.String(), "reserve reached") {
		t.Errorf("not stopped by the guard:\n%s", logs)
	}
}

// TestFutureTimesCollected: a clock that was ahead and is set back (a
// device without an RTC restoring a saved time that was wrong, an RTC
// reset by a bad NTP answer) leaves a finished revision and its objects
// with times in the future: the automatic GC that an upload needs removes
// them all the same, and the upload is stored.
func TestFutureTimesCollected(t *testing.T) {
	const kib = 1 << 10
	st, oldRoot, logs, sock := oldRevisionServer(t, "4m", 1536*kib, nil, "10")
	l := st.Layout
	future := time.Now().AddDate(1, 0, 0)
	for _, p := range []string{l.Trail("1"), l.Object(shaOf(oldRoot))} {
		if err := os.Chtimes(p, future, future); err != nil {
			t.Fatal(err)
		}
	}
	sp := space(t, l)
	big := pattern("after the clock went back ", int(sp.Available(10))+256*kib)
	if got := sendEarly(t, sock, "PUT", "/objects/"+shaOf(big), big, int64(len(big))); got.status != 200 {
		t.Errorf("object that fits once unused revision 1 goes = %d %s; revision 1 there: %v\n%s",
			got.status, got.body, exists(l.Trail("1")), logs)
	}
}

// TestPendingUpdateSurvivesUploadGCs: a local update uploaded over a long
// time (a large revision over a slow link), its objects each needing an
// automatic GC to fit (a finished revision is installed, and logs fill
// the storage, between two of them): every GC removes the finished
// revision of its round and nothing of the update, whatever the defer
// time; the step that refers to all of its objects is installed at the
// end. On dda4ef9 the GC removed the objects older than the window.
func TestPendingUpdateSurvivesUploadGCs(t *testing.T) {
	const kib = 1 << 10
	st, _, logs, sock := oldRevisionServer(t, "4m", 128*kib, nil, "10", config.PVStorageGCDeferTime, "1")
	l := st.Layout
	client := unixClient(sock)
	// filler stands for the logs: it leaves leave bytes above the reserve.
	filler := filepath.Join(l.Root, "filler")
	fill := func(leave int64) {
		t.Helper()
		var cur int64
		if fi, err := os.Stat(filler); err == nil {
			cur = fi.Size()
		}
		sp := space(t, l)
		n := cur + sp.Free - sp.Percent(10) - leave
		if err := os.WriteFile(filler, bytes.Repeat([]byte{'l'}, int(max(n, 0))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := "slow update conf"
	if got := do(t, client, "PUT", "/objects/"+shaOf(conf), conf); got.status != 200 {
		t.Fatalf("conf = %d %s", got.status, got.body)
	}
	var parts []string
	for round := 1; round <= 5; round++ {
		if round > 1 {
			// Longer than the defer time since the update's last object.
			time.Sleep(1100 * time.Millisecond)
			rev := fmt.Sprint(round)
			installRev(t, l, rev, "conf", pattern("finished "+rev+" ", 128*kib))
			finish(t, l, rev)
		}
		fill(16 * kib)
		part := pattern(fmt.Sprintf("slow update part %d ", round), 64*kib)
		if got := do(t, client, "PUT", "/objects/"+shaOf(part), part); got.status != 200 {
			t.Fatalf("round %d: object that fits after a GC = %d %s\n%s", round, got.status, got.body, logs)
		}
		parts = append(parts, part)
		if revs, _ := l.Revisions(); !slices.Equal(revs, []string{"0"}) {
			t.Errorf("round %d: revisions %v, want the finished one collected", round, revs)
		}
		for i, data := range append([]string{conf}, parts...) {
			if err := l.Verify(shaOf(data)); err != nil {
				t.Errorf("round %d: the update's object %d was removed by the automatic GC: %v", round, i, err)
			}
		}
	}
	if n := strings.Count(logs.String(), "storage garbage collected automatically"); n != 5 {
		t.Errorf("%d automatic GCs, want 5:\n%s", n, logs)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	vols, refs := "", ""
	for i, p := range parts[1:] {
		vols += fmt.Sprintf(`,"v%d"`, i)
		refs += fmt.Sprintf(`,"web/v%d":"%s"`, i, shaOf(p))
	}
	step := `{"#spec":"pantavisor-service-system@1",` +
		`"web/run.json":{"#spec":"service-manifest-run@1","name":"web","type":"lxc",` +
		`"config":"lxc.container.conf","root-volume":"root.squashfs","volumes":[` + vols[1:] + `],` +
		`"storage":{"lxc-overlay":{"persistence":"boot"}}},` +
		`"web/lxc.container.conf":"` + shaOf(conf) + `","web/root.squashfs":"` + shaOf(parts[0]) + `"` + refs + `}`
	if got := do(t, client, "PUT", "/steps/locals/slow", step); got.status != 200 {
		t.Errorf("the update's step = %d %s", got.status, got.body)
	}
}

// TestConcurrentUploadsKeepReserve: two uploads with a Content-Length,
// each of which fits above the reserve alone, both under 4 MiB (one look
// of the guard each), sent at the same time: the first claims its bytes,
// the second sees the room less that claim and is refused (507, or 503
// when its GC must wait for the first); the reserve is intact. 8 MiB
// tmpfs, 25 % (2 MiB) reserved.
func TestConcurrentUploadsKeepReserve(t *testing.T) {
	st := &Storage{Layout: storage.Layout{Root: isolated.Tmpfs(t, "8m")}, State: state.Options{AppEngine: true}}
	l := st.Layout
	installRev(t, l, "0", "conf", "factory root")
	logs, sock := serveRunning(t, st, "0", map[string]string{config.PVStorageGCReserved: "25"})

	sp := space(t, l)
	size := int(guardEvery) - 64<<10
	if int64(size) > sp.Available(25) || int64(2*size) <= sp.Available(25) {
		t.Fatalf("bad set-up: %d bytes", size)
	}
	bodies := []string{pattern("first upload ", size), pattern("second upload ", size)}
	// Headers and 4 KiB of each body first, so that both are admitted or
	// not before either is written much; then the rest.
	conns := make([]net.Conn, 2)
	for i, body := range bodies {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
		fmt.Fprintf(c, "PUT /objects/%s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s", shaOf(body), len(body), body[:4096])
	}
	time.Sleep(300 * time.Millisecond)
	var wg sync.WaitGroup
	status := make([]string, 2)
	for i, body := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.WriteString(conns[i], body[4096:])
			_ = conns[i].SetReadDeadline(time.Now().Add(10 * time.Second))
			line, _ := bufio.NewReader(conns[i]).ReadString('\n')
			status[i] = strings.TrimSpace(line)
		}()
	}
	wg.Wait()
	reserve := sp.Percent(25)
	if now := space(t, l); now.Free < reserve {
		t.Errorf("answers %q; free %d B after two concurrent uploads of %d B each (%d B above the reserve before): below the reserve of %d B",
			status, now.Free, size, sp.Available(25), reserve)
	}
	ok, refused := 0, 0
	for i, st := range status {
		switch st {
		case "HTTP/1.1 200 OK":
			ok++
			if err := l.Verify(shaOf(bodies[i])); err != nil {
				t.Errorf("upload %d stored: %v", i, err)
			}
		case "HTTP/1.1 507 Insufficient Storage", "HTTP/1.1 503 Service Unavailable":
			refused++
			if exists(l.Object(shaOf(bodies[i]))) {
				t.Errorf("refused upload %d is stored", i)
			}
		}
	}
	if ok != 1 || refused != 1 {
		t.Errorf("answers %q, want one 200 and one 507 or 503\n%s", status, logs)
	}
}

// TestChunkedUploadGetsNoGC: an upload without a Content-Length
// (chunked) gets no automatic GC, as designed (space.go): one that fits
// only once an old revision is collected is refused 507, nothing of it
// stored and revision 1 left; the same body with a Content-Length is
// stored after a GC.
func TestChunkedUploadGetsNoGC(t *testing.T) {
	const kib = 1 << 10
	st, _, logs, sock := oldRevisionServer(t, "4m", 1536*kib, nil, "10")
	l := st.Layout

	sp := space(t, l)
	big := pattern("chunked ", int(sp.Available(10))+256*kib)
	got := sendEarly(t, sock, "PUT", "/objects/"+shaOf(big), big, -1)
	if got.status != 507 || !exists(l.Trail("1")) || exists(l.Object(shaOf(big))) {
		t.Errorf("chunked object that fits after a GC = %d %s; revision 1 still there: %v\n%s",
			got.status, got.body, exists(l.Trail("1")), logs)
	}
	if got := sendEarly(t, sock, "PUT", "/objects/"+shaOf(big), big, int64(len(big))); got.status != 200 || exists(l.Trail("1")) {
		t.Errorf("the same with a Content-Length = %d %s; revision 1 still there: %v", got.status, got.body, exists(l.Trail("1")))
	}
}

// TestHopelessUploadRefusedWithoutGC: an upload whose Content-Length is
// more than the whole storage less the reserve can never be stored: it is
// refused 507 at once, without a GC (revision 1, its logs and revision
// disks stay). With a reserve of 100 % any upload is.
func TestHopelessUploadRefusedWithoutGC(t *testing.T) {
	const kib = 1 << 10
	for _, c := range []struct {
		reserved string
		size     int
	}{{"10", 8 << 20}, {"100", 4 * kib}} {
		st, _, logs, sock := oldRevisionServer(t, "4m", 1024*kib, nil, c.reserved)
		l := st.Layout
		data := pattern("hopeless "+c.reserved, c.size)
		if got := sendEarly(t, sock, "PUT", "/objects/"+shaOf(data), data, int64(len(data))); got.status != 507 || got.body != errJSON(msgNoSpace) {
			t.Errorf("reserve %s %%: %d B on 4 MiB = %d %s", c.reserved, c.size, got.status, got.body)
		}
		if !exists(l.Trail("1")) || strings.Contains(logs.String(), "garbage collected") {
			t.Errorf("reserve %s %%: revision 1 there: %v; a GC ran for an object that can never fit:\n%s", c.reserved, exists(l.Trail("1")), logs)
		}
	}
}

// TestUploadDuringCommandIsBusy: an object that fits only after a GC,
// sent while a command runs (the GC cannot take the storage), is answered
// 503 with a Retry-After, not 507 (pvcontrol exits 75, "try again", not
// 48, "full"): nothing is removed meanwhile. Once the command is over the
// same upload runs its GC and is stored.
func TestUploadDuringCommandIsBusy(t *testing.T) {
	const kib = 1 << 10
	b := newFakeBackend()
	gate := make(chan struct{})
	b.cmdGate = gate
	st, _, logs, sock := oldRevisionServer(t, "4m", 1536*kib, b, "10")
	l := st.Layout
	client := unixClient(sock)

	done := make(chan reply)
	go func() {
		res, err := client.Post("http://localhost/commands", "application/json",
			strings.NewReader(`{"op":"REBOOT_DEVICE","payload":"test"}`))
		if err != nil {
			done <- reply{}
			return
		}
		res.Body.Close()
		done <- reply{status: res.StatusCode}
	}()
	for deadline := time.Now().Add(5 * time.Second); len(b.commandLog()) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the command never started")
		}
	}
	sp := space(t, l)
	big := pattern("during a command ", int(sp.Available(10))+256*kib)
	got := sendEarly(t, sock, "PUT", "/objects/"+shaOf(big), big, int64(len(big)))
	there := exists(l.Trail("1"))
	close(gate)
	<-done
	if got.status != 503 || got.header.Get("Retry-After") != "120" || got.body != errJSON(msgGCBusy) || !there {
		t.Errorf("an object that fits after a GC, during a command = %d %s (Retry-After %q); revision 1 there: %v\n%s",
			got.status, got.body, got.header.Get("Retry-After"), there, logs)
	}
	if again := sendEarly(t, sock, "PUT", "/objects/"+shaOf(big), big, int64(len(big))); again.status != 200 {
		t.Errorf("the same once the command is over = %d %s", again.status, again.body)
	}
}

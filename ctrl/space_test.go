package ctrl

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/storage"
)

// diskSim is a filesystem of Total bytes for reserveGuard: what is
// written to it is taken from Free, as the kernel's statfs would show.
type diskSim struct {
	sp       storage.Space
	reserved int
	statfs   int
	err      error
}

func (d *diskSim) room() (int64, error) {
	d.statfs++
	return d.sp.Available(d.reserved), d.err
}

func (d *diskSim) Write(p []byte) (int, error) {
	d.sp.Free -= int64(len(p))
	return len(p), nil
}

// TestReserveGuard: an upload stops before it eats into the reserve, to
// the byte, with or without a Content-Length, and looks at the free space
// every few MiB, not at every read.
func TestReserveGuard(t *testing.T) {
	const mib = 1 << 20
	// 100 MiB with 5 % reserved: 20 MiB free leaves 15 MiB for uploads.
	room := int64(15 * mib)
	for _, c := range []struct {
		name   string
		size   int64
		length bool
		ok     bool
	}{
		{"chunked, fits to the byte", room, false, true},
		{"chunked, one byte too many", room + 1, false, false},
		{"known length, fits", room, true, true},
		{"known length, too large", room + 1, true, false},
		{"small chunked", 10, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := &diskSim{sp: storage.Space{Free: 20 * mib, Total: 100 * mib}, reserved: 5}
			length := int64(-1)
			if c.length {
				length = c.size
			}
			g := &reserveGuard{r: io.LimitReader(zeros{}, c.size), length: length, room: d.room}
			n, err := io.Copy(d, g)
			if c.ok {
				if err != nil || n != c.size {
					t.Fatalf("copied %d of %d: %v", n, c.size, err)
				}
				if max := int(c.size/guardEvery) + 2; d.statfs > max {
					t.Errorf("%d statfs for %d bytes, want at most %d", d.statfs, c.size, max)
				}
				return
			}
			var se *spaceError
			if !errors.As(err, &se) || !errors.Is(err, storage.ErrNoSpace) {
				t.Fatalf("copy of %d bytes: %v, want a spaceError", c.size, err)
			}
			if d.sp.Free < 5*mib {
				t.Errorf("free %d after the refusal: the reserve was eaten into", d.sp.Free)
			}
			if c.length && (n != 0 || se.required != c.size || se.available != room) {
				t.Errorf("known length: copied %d, %+v; want nothing, %d and %d", n, se, c.size, room)
			}
			if !strings.Contains(err.Error(), "Space required") {
				t.Errorf("error %q does not say upstream's words", err)
			}
		})
	}
	// A storage that cannot be measured is not the guard's to refuse.
	d := &diskSim{err: errors.New("statfs: EIO")}
	if n, err := io.Copy(d, &reserveGuard{r: io.LimitReader(zeros{}, 9*mib), length: -1, room: d.room}); err != nil || n != 9*mib {
		t.Fatalf("unknown free space: %d, %v", n, err)
	}
	// An empty body needs no look.
	d = &diskSim{}
	if n, err := io.Copy(d, &reserveGuard{r: strings.NewReader(""), length: -1, room: d.room}); err != nil || n != 0 || d.statfs != 0 {
		t.Fatalf("empty body: %d, %v, %d statfs", n, err, d.statfs)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// gcServer is a server on st whose configuration the test sets, and whose
// log it reads.
func gcServer(t *testing.T, b Backend, st *Storage, settings map[string]string) (*Server, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	s := New(b, fixedResolver("", nil), slog.New(slog.NewTextHandler(logs, nil)))
	s.SetStorage(*st)
	cfg := config.New()
	for k, v := range settings {
		if _, err := cfg.Set(k, v, config.LevelCmd); err != nil {
			t.Fatal(err)
		}
	}
	s.SetConfig(cfg)
	return s, logs
}

// logBuffer is a log the server writes from its goroutines and the test
// reads.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// finish marks revisions as updates over (DONE): an automatic GC
// removes only those.
func finish(t *testing.T, l storage.Layout, revs ...string) {
	t.Helper()
	for _, rev := range revs {
		if err := l.WriteProgress(rev, storage.NewProgress(storage.StatusDone, storage.MsgDone)); err != nil {
			t.Fatal(err)
		}
	}
}

// withFinishedRev1 is a storage with the factory revision and revision
// 1, over (DONE), referring to "conf 1" and "root 1".
func withFinishedRev1(t *testing.T) *Storage {
	t.Helper()
	st := newStorage(t)
	installRev(t, st.Layout, "0", "conf", "factory root")
	installRev(t, st.Layout, "1", "conf 1", "root 1")
	finish(t, st.Layout, "1")
	return st
}

// TestAutoGCKeepsUnfinished: the automatic GC removes a revision not in
// use whose update is over (DONE, ERROR) and the objects only it
// referred to; it keeps a local step put and not run (NEW), a revision
// without progress, and the objects nothing referred to before it (a
// local update's objects, uploaded before their step), however old their
// files look.
func TestAutoGCKeepsUnfinished(t *testing.T) {
	st := newStorage(t)
	l := st.Layout
	installRev(t, l, "0", "conf", "factory root")
	installRev(t, l, "1", "conf", "old root")
	installRev(t, l, "2", "conf", "failed root")
	installRev(t, l, "3", "conf", "no progress root")
	finish(t, l, "1")
	if err := l.WriteProgress("2", storage.NewProgress(storage.StatusError, storage.MsgContainerFailed)); err != nil {
		t.Fatal(err)
	}
	b := newFakeBackend()
	b.revs = messages.RevisionsReply{Running: "0", Committed: "0"}
	s, _ := gcServer(t, b, st, map[string]string{config.PVStorageGCDeferTime: "0"})
	client := unixClient(serveTest(t, s))
	pending := []string{"pending conf", "pending root"}
	for _, data := range pending {
		if got := do(t, client, "PUT", "/objects/"+shaOf(data), data); got.status != 200 {
			t.Fatalf("object = %d %s", got.status, got.body)
		}
	}
	installed := "step conf"
	if got := do(t, client, "PUT", "/objects/"+shaOf(installed), installed); got.status != 200 {
		t.Fatalf("object = %d %s", got.status, got.body)
	}
	if got := do(t, client, "PUT", "/steps/locals/next", stateWith(shaOf(installed), shaOf("factory root"))); got.status != 200 {
		t.Fatalf("step = %d %s", got.status, got.body)
	}
	old := time.Now().AddDate(-5, 0, 0)
	for _, p := range []string{l.Trail("locals/next"), l.Object(shaOf(pending[0])), l.Object(shaOf(pending[1]))} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}

	rep, err := s.collectAuto(context.Background(), st, "test", true)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(rep.Objects)
	want := []string{shaOf("old root"), shaOf("failed root")}
	slices.Sort(want)
	if !slices.Equal(rep.Revisions, []string{"1", "2"}) || !slices.Equal(rep.Objects, want) {
		t.Errorf("removed %v and %v, want revisions 1 2 and %v", rep.Revisions, rep.Objects, want)
	}
	if revs, _ := l.Revisions(); !slices.Equal(revs, []string{"0", "3", "locals/next"}) {
		t.Errorf("revisions %v, want 0 3 locals/next", revs)
	}
	for _, data := range append(pending, installed, "conf") {
		if err := l.Verify(shaOf(data)); err != nil {
			t.Errorf("kept object removed: %v", err)
		}
	}
}

// TestAutoGCKeepsSharedPut: a local update's object that a finished
// revision also refers to (the put found it stored) survives the GC
// before an upload that removes that revision, and the update's step is
// installed; once the step names it, the record of the put is dropped;
// the threshold GC's sweep after a long idle time forgets the puts.
func TestAutoGCKeepsSharedPut(t *testing.T) {
	st := withFinishedRev1(t)
	l := st.Layout
	b := newFakeBackend()
	b.revs = messages.RevisionsReply{Running: "0", Committed: "0"}
	s, _ := gcServer(t, b, st, nil)
	client := unixClient(serveTest(t, s))
	for _, data := range []string{"root 1", "left over"} {
		if got := do(t, client, "PUT", "/objects/"+shaOf(data), data); got.status != 200 {
			t.Fatalf("object = %d %s", got.status, got.body)
		}
	}
	rep, err := s.collectAuto(context.Background(), st, "test", true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Revisions, []string{"1"}) || !slices.Equal(rep.Objects, []string{shaOf("conf 1")}) {
		t.Errorf("removed %v and %v, want revision 1 and conf 1 only", rep.Revisions, rep.Objects)
	}
	if got := do(t, client, "PUT", "/steps/locals/shared", stateWith(shaOf("conf"), shaOf("root 1"))); got.status != 200 {
		t.Fatalf("the step of the update sharing root 1 = %d %s", got.status, got.body)
	}
	if got := s.pendingObjects(); !slices.Equal(got, []string{shaOf("left over")}) {
		t.Errorf("objects put and named by no step: %v, want left over only", got)
	}
	if _, err := s.collectAuto(context.Background(), st, "test", false); err != nil {
		t.Fatal(err)
	}
	if got := s.pendingObjects(); len(got) != 0 || exists(l.Object(shaOf("left over"))) {
		t.Errorf("after the sweep: put %v, left over there: %v", got, exists(l.Object(shaOf("left over"))))
	}
}

// TestAutoGCBusy: the automatic GC never waits for, or runs beside, a
// command or another write, and removes nothing when root cannot name the
// revisions in use.
func TestAutoGCBusy(t *testing.T) {
	st := newStorage(t)
	installRev(t, st.Layout, "0", "conf", "factory root")
	installRev(t, st.Layout, "1", "conf", "old root")
	b := newFakeBackend()
	b.revs = messages.RevisionsReply{Running: "0", Committed: "0"}
	finish(t, st.Layout, "1")
	s, _ := gcServer(t, b, st, map[string]string{config.PVStorageGCDeferTime: "0"})
	ctx := context.Background()

	s.storeMu.RLock()
	if _, err := s.collectAuto(ctx, st, "test", true); !errors.Is(err, errGCBusy) {
		t.Errorf("during a write: %v", err)
	}
	s.storeMu.RUnlock()
	s.cmdMu.Lock()
	if _, err := s.collectAuto(ctx, st, "test", true); !errors.Is(err, errGCBusy) {
		t.Errorf("during a command: %v", err)
	}
	s.cmdMu.Unlock()
	b.revsErr = errors.New("root unresponsive")
	if _, err := s.collectAuto(ctx, st, "test", true); err == nil {
		t.Error("without the revisions in use: no error")
	}
	if revs, _ := st.Layout.Revisions(); len(revs) != 2 {
		t.Fatalf("revisions %v after refused GCs", revs)
	}
	b.revsErr = nil
	if rep, err := s.collectAuto(ctx, st, "test", true); err != nil || len(rep.Revisions) != 1 {
		t.Fatalf("GC = %+v, %v", rep, err)
	}
}

// TestThresholdGC: the threshold GC runs when the free space is below the
// threshold, not when it is off, not within the defer window after an
// upload, and not again while nothing changed.
func TestThresholdGC(t *testing.T) {
	st := newStorage(t)
	installRev(t, st.Layout, "0", "conf", "factory root")
	b := newFakeBackend()
	b.revs = messages.RevisionsReply{Running: "0", Committed: "0"}
	// Any filesystem has less than 100 % free.
	s, logs := gcServer(t, b, st, map[string]string{config.PVStorageGCThreshold: "100", config.PVStorageGCDeferTime: "600"})
	ctx := context.Background()
	if !s.thresholdGC(ctx) {
		t.Fatal("below the threshold, no upload: no GC")
	}
	if !strings.Contains(logs.String(), "storage garbage collected automatically") {
		t.Errorf("the GC is not logged: %s", logs)
	}
	if s.thresholdGC(ctx) {
		t.Error("GC again with nothing changed")
	}
	s.uploaded()
	if s.thresholdGC(ctx) {
		t.Error("GC within the defer window after an upload")
	}
	s.recent.last = time.Now().Add(-11 * time.Minute)
	if !s.thresholdGC(ctx) {
		t.Error("no GC after the defer window")
	}
	installRev(t, st.Layout, "1", "conf", "root 1")
	if !s.thresholdGC(ctx) {
		t.Error("no GC after a revision came")
	}
	off, _ := gcServer(t, b, st, map[string]string{config.PVStorageGCThreshold: "0"})
	if off.thresholdGC(ctx) {
		t.Error("GC with the threshold off")
	}
}

// gatedBackend is fakeBackend whose Revisions call number block waits
// until release is closed, having closed entered: the automatic GC asks
// for the revisions with cmdMu held (collectAuto), as long as root takes
// to answer and the GC to run.
type gatedBackend struct {
	*fakeBackend
	calls   atomic.Int32
	block   int32
	entered chan struct{}
	release chan struct{}
}

func (g *gatedBackend) Revisions() (*messages.RevisionsReply, error) {
	if g.calls.Add(1) == g.block {
		close(g.entered)
		<-g.release
	}
	return g.fakeBackend.Revisions()
}

func newGated(block int32) *gatedBackend {
	b := newFakeBackend()
	b.revs = messages.RevisionsReply{Running: "0", Committed: "0"}
	return &gatedBackend{fakeBackend: b, block: block, entered: make(chan struct{}), release: make(chan struct{})}
}

// TestThresholdGCCollectsOrphansOnceIdle: an object nothing refers to,
// put before the supervisor restarted (a local update's, its step not
// put yet), survives the threshold GC for max(defer time, orphanIdle)
// after the server's start, and after any later upload; once that long
// passed without an upload the threshold GC runs again and removes it,
// though nothing else changed.
func TestThresholdGCCollectsOrphansOnceIdle(t *testing.T) {
	st := newStorage(t)
	l := st.Layout
	installRev(t, l, "0", "conf", "factory root")
	b := newFakeBackend()
	b.revs = messages.RevisionsReply{Running: "0", Committed: "0"}
	s, _ := gcServer(t, b, st, map[string]string{config.PVStorageGCThreshold: "100", config.PVStorageGCDeferTime: "1"})
	ctx := context.Background()
	orphan := "put before the restart, never stepped"
	if _, err := l.PutObject(shaOf(orphan), strings.NewReader(orphan), 0); err != nil {
		t.Fatal(err)
	}
	// Its file looks years old: no clock plays a part.
	old := time.Now().AddDate(-5, 0, 0)
	if err := os.Chtimes(l.Object(shaOf(orphan)), old, old); err != nil {
		t.Fatal(err)
	}
	if !s.thresholdGC(ctx) {
		t.Fatal("no threshold GC at start")
	}
	if err := l.Verify(shaOf(orphan)); err != nil {
		t.Fatalf("collected within %v of the server's start: %v", orphanIdle, err)
	}
	// The server started long ago, an upload came 30 s ago.
	s.recent.mu.Lock()
	s.recent.start = time.Now().Add(-time.Hour)
	s.recent.last = time.Now().Add(-30 * time.Second)
	s.recent.mu.Unlock()
	s.thresholdGC(ctx)
	if err := l.Verify(shaOf(orphan)); err != nil {
		t.Fatalf("collected within %v of an upload: %v", orphanIdle, err)
	}
	s.recent.mu.Lock()
	s.recent.last = time.Now().Add(-orphanIdle - time.Second)
	s.recent.mu.Unlock()
	if !s.thresholdGC(ctx) {
		t.Fatal("no threshold GC once idle")
	}
	if _, err := os.Stat(l.Object(shaOf(orphan))); !os.IsNotExist(err) {
		t.Errorf("the object nothing refers to is still there %v after the last upload: %v", orphanIdle, err)
	}
	if s.thresholdGC(ctx) {
		t.Error("GC again with nothing changed")
	}
}

// TestCommandDuringAutoGCIsBusy: a command that comes while an automatic
// GC runs (it holds cmdMu: root's answer, then the GC) is answered as
// during any command, 503 with Retry-After, which pvcontrol takes as
// "try again" (exit 75); it is not run. Kept as designed (space.go).
func TestCommandDuringAutoGCIsBusy(t *testing.T) {
	st := newStorage(t)
	installRev(t, st.Layout, "0", "conf", "factory root")
	installRev(t, st.Layout, "locals/next", "conf", "next root")
	// Call 1 is thresholdGC's own, call 2 collectAuto's under cmdMu.
	b := newGated(2)
	s, _ := gcServer(t, b, st, map[string]string{config.PVStorageGCThreshold: "100", config.PVStorageGCDeferTime: "0"})
	client := unixClient(serveTest(t, s))
	done := make(chan bool)
	go func() { done <- s.thresholdGC(context.Background()) }()
	<-b.entered
	got := do(t, client, "POST", "/commands", `{"op":"LOCAL_RUN","payload":"locals/next"}`)
	close(b.release)
	<-done
	if got.status != 503 || got.header.Get("Retry-After") != "120" || len(b.commandLog()) != 0 {
		t.Errorf("LOCAL_RUN during a threshold GC = %d %s (Retry-After %q); commands run: %v",
			got.status, got.body, got.header.Get("Retry-After"), b.commandLog())
	}
	if got := do(t, client, "POST", "/commands", `{"op":"LOCAL_RUN","payload":"locals/next"}`); got.status != 200 {
		t.Errorf("LOCAL_RUN once the GC is over = %d %s", got.status, got.body)
	}
}

// TestWatchStorageStopWaitsForGC: WatchStorage, stopped while its GC
// waits for root's answer, returns only once that GC is over (the
// supervisor unmounts the storage next: cmd/pantavisor waits for it), and
// the GC, its context ended before it began removing, removes nothing.
func TestWatchStorageStopWaitsForGC(t *testing.T) {
	st := withFinishedRev1(t)
	l := st.Layout
	b := newGated(2)
	s, _ := gcServer(t, b, st, map[string]string{config.PVStorageGCThreshold: "100", config.PVStorageGCDeferTime: "0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.WatchStorage(ctx, 10*time.Millisecond) }()
	<-b.entered
	cancel() // the supervisor stops
	select {
	case <-done:
		t.Error("WatchStorage returned with its GC still in flight")
	case <-time.After(300 * time.Millisecond):
	}
	close(b.release)
	<-done
	if revs, _ := l.Revisions(); !slices.Contains(revs, "1") {
		t.Errorf("revisions after the stop: %v (revision 1 removed after the stop)", revs)
	}
	// s.cmdMu is free again: the GC is over.
	if !s.cmdMu.TryLock() {
		t.Error("the GC still holds the commands' lock after WatchStorage returned")
	} else {
		s.cmdMu.Unlock()
	}
}

// TestAutoGCKeepsInUse: what the automatic GC keeps of the revisions in
// use, though each is finished (DONE): an update in TESTING (running =
// tried, committed the old one), the backing revision of a non-reboot
// update, the factory revision and trails/current; it removes only the
// one finished revision nobody uses.
func TestAutoGCKeepsInUse(t *testing.T) {
	st := newStorage(t)
	l := st.Layout
	for _, rev := range []string{"0", "1", "2", "3", "4", "locals/unused"} {
		installRev(t, l, rev, "conf "+rev, "root "+rev)
		finish(t, l, rev)
	}
	if err := l.SetCurrent("4"); err != nil {
		t.Fatal(err)
	}
	b := newFakeBackend()
	b.revs = messages.RevisionsReply{Running: "3", Committed: "1", Tried: "3", Updating: true, Backing: []string{"2"}}
	s, _ := gcServer(t, b, st, nil)
	rep, err := s.collectAuto(context.Background(), st, "test", true)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rep.Revisions, " ") != "locals/unused" || len(rep.Objects) != 2 {
		t.Errorf("removed %v and %d objects, want locals/unused and its 2", rep.Revisions, len(rep.Objects))
	}
	if err := l.Check(); err != nil {
		t.Errorf("storage after the GC: %v", err)
	}
}

// TestUploadClaims: what an upload in flight with a Content-Length has
// still to write counts against the others, not against itself, and
// nothing once it is over.
func TestUploadClaims(t *testing.T) {
	s, _ := gcServer(t, newFakeBackend(), newStorage(t), nil)
	a := &claim{size: 100}
	b := &claim{size: 40}
	s.recent.claims = map[*claim]struct{}{a: {}, b: {}}
	a.written.Store(30)
	if got := s.othersClaimed(nil); got != 110 {
		t.Errorf("claimed by all: %d, want 70 + 40", got)
	}
	if got := s.othersClaimed(a); got != 40 {
		t.Errorf("claimed by the others of a: %d, want 40", got)
	}
	b.written.Store(50) // more than claimed: never negative
	if got := s.othersClaimed(a); got != 0 {
		t.Errorf("claimed by b, overwritten: %d, want 0", got)
	}
	s.release(a)
	s.release(nil)
	if got := s.othersClaimed(nil); got != 0 {
		t.Errorf("claimed once a is released: %d, want 0", got)
	}
	// The guard counts what it passes on in its claim, and sees the room
	// its room function gives, the others' claims taken off.
	c := &claim{size: 3 << 20}
	d := &diskSim{sp: storage.Space{Free: 20 << 20, Total: 100 << 20}}
	other := int64(18 << 20)
	g := &reserveGuard{r: io.LimitReader(zeros{}, c.size), length: c.size, claim: c,
		room: func() (int64, error) { n, err := d.room(); return n - other, err }}
	if n, err := io.Copy(d, g); err == nil || n != 0 {
		t.Errorf("3 MiB with 2 MiB left beside another's claim: copied %d, %v", n, err)
	}
	other = 1 << 20
	g = &reserveGuard{r: io.LimitReader(zeros{}, c.size), length: c.size, claim: c,
		room: func() (int64, error) { n, err := d.room(); return n - other, err }}
	if n, err := io.Copy(d, g); err != nil || n != c.size || c.written.Load() != c.size {
		t.Errorf("3 MiB with 19 MiB left: copied %d, %v; written %d", n, err, c.written.Load())
	}
}

// exists reports whether a file is at p.
func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

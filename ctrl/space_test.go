package ctrl

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
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

func (d *diskSim) space() (storage.Space, int, error) {
	d.statfs++
	return d.sp, d.reserved, d.err
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
			g := &reserveGuard{r: io.LimitReader(zeros{}, c.size), length: length, space: d.space}
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
	if n, err := io.Copy(d, &reserveGuard{r: io.LimitReader(zeros{}, 9*mib), length: -1, space: d.space}); err != nil || n != 9*mib {
		t.Fatalf("unknown free space: %d, %v", n, err)
	}
	// An empty body needs no look.
	d = &diskSim{}
	if n, err := io.Copy(d, &reserveGuard{r: strings.NewReader(""), length: -1, space: d.space}); err != nil || n != 0 || d.statfs != 0 {
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

// TestKeepRecent: the automatic GC keeps what was put within the defer
// window (by the server's record, whatever the file's time), and only
// that.
func TestKeepRecent(t *testing.T) {
	st := newStorage(t)
	l := st.Layout
	installRev(t, l, "0", "conf", "factory root")
	b := newFakeBackend()
	b.revs = messages.RevisionsReply{Running: "0", Committed: "0"}
	s, _ := gcServer(t, b, st, map[string]string{config.PVStorageGCDeferTime: "600"})
	put := func(data string, age time.Duration) string {
		t.Helper()
		sha := shaOf(data)
		if _, err := l.PutObject(sha, strings.NewReader(data), 0); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-age)
		if err := os.Chtimes(l.Object(sha), old, old); err != nil {
			t.Fatal(err)
		}
		return sha
	}
	fresh := put("fresh", 0)
	again := put("put again, its file older", time.Hour)
	stale := put("stale", time.Hour)
	s.uploaded(again)
	s.uploaded(stale)
	// stale's record is past the window.
	s.recent.objects[stale] = time.Now().Add(-11 * time.Minute)

	rep, err := s.collectAuto(st, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Objects) != 1 || rep.Objects[0] != stale {
		t.Errorf("removed %v, want only %s (stale)", rep.Objects, stale)
	}
	for _, sha := range []string{fresh, again} {
		if err := l.Verify(sha); err != nil {
			t.Errorf("recent object removed: %v", err)
		}
	}
	// A record past the window is dropped at the next put.
	s.recent.objects[again] = time.Now().Add(-11 * time.Minute)
	s.uploaded(fresh)
	if _, ok := s.recent.objects[again]; ok || len(s.recent.objects) != 1 {
		t.Errorf("records after a put: %v", s.recent.objects)
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
	s, _ := gcServer(t, b, st, map[string]string{config.PVStorageGCDeferTime: "0"})

	s.storeMu.RLock()
	if _, err := s.collectAuto(st, "test"); !errors.Is(err, errGCBusy) {
		t.Errorf("during a write: %v", err)
	}
	s.storeMu.RUnlock()
	s.cmdMu.Lock()
	if _, err := s.collectAuto(st, "test"); !errors.Is(err, errGCBusy) {
		t.Errorf("during a command: %v", err)
	}
	s.cmdMu.Unlock()
	b.revsErr = errors.New("root unresponsive")
	if _, err := s.collectAuto(st, "test"); err == nil {
		t.Error("without the revisions in use: no error")
	}
	if revs, _ := st.Layout.Revisions(); len(revs) != 2 {
		t.Fatalf("revisions %v after refused GCs", revs)
	}
	b.revsErr = nil
	if rep, err := s.collectAuto(st, "test"); err != nil || len(rep.Revisions) != 1 {
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
	if !s.thresholdGC() {
		t.Fatal("below the threshold, no upload: no GC")
	}
	if !strings.Contains(logs.String(), "storage garbage collected automatically") {
		t.Errorf("the GC is not logged: %s", logs)
	}
	if s.thresholdGC() {
		t.Error("GC again with nothing changed")
	}
	s.uploaded("")
	if s.thresholdGC() {
		t.Error("GC within the defer window after an upload")
	}
	s.recent.last = time.Now().Add(-11 * time.Minute)
	if !s.thresholdGC() {
		t.Error("no GC after the defer window")
	}
	installRev(t, st.Layout, "1", "conf", "root 1")
	if !s.thresholdGC() {
		t.Error("no GC after a revision came")
	}
	off, _ := gcServer(t, b, st, map[string]string{config.PVStorageGCThreshold: "0"})
	if off.thresholdGC() {
		t.Error("GC with the threshold off")
	}
}

package logs

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// walkCounter counts the keeper's walks of the tree: each opens its root.
type walkCounter struct{ fd int }

func newWalkCounter(t *testing.T, root string) *walkCounter {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, root, unix.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	return &walkCounter{fd}
}

// take returns the walks since the last call.
func (w *walkCounter) take() int {
	n, buf := 0, make([]byte, 64*1024)
	for {
		m, err := unix.Read(w.fd, buf)
		if m <= 0 || err != nil {
			return n
		}
		for off := 0; off+unix.SizeofInotifyEvent <= m; {
			size := binary.NativeEndian.Uint32(buf[off+12:])
			if size == 0 { // the root itself, not an entry in it
				n++
			}
			off += unix.SizeofInotifyEvent + int(size)
		}
	}
}

// A container writing a line at a time, far under every limit, made the
// keeper walk the whole tree twice per line: most of a CPU. Checks are at
// least checkGap apart now.
func TestAChattyContainerDoesNotMakeTheKeeperSpin(t *testing.T) {
	dir := t.TempDir()
	for r := range 5 {
		for c := range 10 {
			writeAged(t, dir, fmt.Sprintf("%d/c%d/console.log", r, c), 1000, time.Hour)
		}
	}
	cur := filepath.Join(dir, "4")
	path := filepath.Join(cur, "chatty", "console.log")
	os.MkdirAll(filepath.Dir(path), 0o755)
	w, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	walks := newWalkCounter(t, dir)
	k := &Keeper{Dir: dir, Current: cur, Limits: Limits{MaxFile: 2 << 20, MaxDir: 16 << 20, Hysteresis: 4}, Log: quiet()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	time.Sleep(100 * time.Millisecond)
	walks.take()
	line := fmt.Appendf(nil, "%0119d\n", 0)
	n, lines := 0, 0
	for start := time.Now(); time.Since(start) < 2*time.Second; {
		w.Write(line)
		lines++
		time.Sleep(200 * time.Microsecond)
		if lines%100 == 0 {
			n += walks.take() // before the inotify queue overflows
		}
	}
	n += walks.take()
	cancel()
	<-done
	// One walk a check (nothing is rotated), a check every checkGap at
	// most, and the fallback sweep: about 8 in 2 s.
	if max := int(2*time.Second/checkGap) + 4; n > max {
		t.Errorf("the keeper walked the tree %d times in 2 s for %d lines (at most %d expected)", n, lines, max)
	}
}

// A check walks the tree once, and a second time only after rotations
// changed it (to sweep the directory by the sizes left).
func TestACheckWalksTheTreeOnceUnlessItRotated(t *testing.T) {
	dir := t.TempDir()
	for c := range 5 {
		writeAged(t, dir, fmt.Sprintf("1/c%d/console.log", c), 1000, time.Hour)
	}
	walks := newWalkCounter(t, dir)
	k := &Keeper{Dir: dir, Current: filepath.Join(dir, "1"), Log: quiet(),
		Limits: Limits{MaxFile: 4000, MaxDir: 1 << 20}}
	k.Enforce()
	if n := walks.take(); n != 1 {
		t.Errorf("a check with nothing over its limits walked the tree %d times, want 1", n)
	}
	big := writeAged(t, dir, "1/big/console.log", 5000, 0)
	k.Enforce()
	if n := walks.take(); n != 2 {
		t.Errorf("a check that rotated walked the tree %d times, want 2", n)
	}
	if fi, err := os.Stat(big); err != nil || fi.Size() != 0 {
		t.Errorf("the log over its limit was not rotated: %v %v", fi, err)
	}
}

// The limits are read at each check when LimitsNow is set: a revision's
// OEM configuration or user-meta may lower them while the device runs.
func TestLimitsReadAtEachCheck(t *testing.T) {
	dir := t.TempDir()
	big := writeAged(t, dir, "1/app/console.log", 5000, 0)
	max := int64(1 << 20)
	k := &Keeper{Dir: dir, Current: filepath.Join(dir, "1"), Log: quiet(),
		LimitsNow: func() Limits { return Limits{MaxFile: max} }}
	k.Enforce()
	if fi, _ := os.Stat(big); fi.Size() != 5000 {
		t.Fatalf("rotated under its limit: %d", fi.Size())
	}
	max = 1000
	k.Enforce()
	if fi, _ := os.Stat(big); fi.Size() != 0 {
		t.Errorf("not rotated at the lowered limit: %d bytes", fi.Size())
	}
}

// The wait after a check is half the time the writers, at the rate seen
// (or half the last estimate, when less shows), take to fill the room
// under the nearer limit, at most checkGap; none after a check that
// acted or the one after it.
func TestPace(t *testing.T) {
	t0 := time.Now()
	lim := Limits{MaxFile: 1 << 20, MaxDir: 16 << 20}
	prev := check{at: t0, after: 4 << 20}
	later := t0.Add(100 * time.Millisecond)
	const flood = float64(10<<20) / 0.1 // 10 MiB in 100 ms
	for _, c := range []struct {
		name     string
		prev     check
		c        check
		rate     float64
		want     time.Duration
		wantRate float64
	}{
		{"acted", prev, check{at: later, before: 4 << 20, acted: true, lim: lim}, 0, 0, 0},
		{"after one that acted", check{at: t0, after: 4 << 20, acted: true}, check{at: later, before: 4 << 20, after: 4 << 20, lim: lim}, 0, 0, 0},
		{"no limits", prev, check{at: later, before: 4 << 20, after: 4 << 20}, 0, checkGap, 0},
		{"first check", check{}, check{at: t0, before: 4 << 20, after: 4 << 20, lim: lim}, 0, checkGap, 0},
		{"chatty, far under", prev, check{at: later, before: 4<<20 + 60<<10, after: 4<<20 + 60<<10, largest: 100 << 10, lim: lim}, 0, checkGap, float64(60<<10) / 0.1},
		// 512 KiB of room in the largest file at 100 MiB/s: 2.5 ms.
		{"flood", prev, check{at: later, before: 14 << 20, after: 14 << 20, largest: 512 << 10, lim: lim}, 0, 2500 * time.Microsecond, flood},
		{"quiet instant in a flood", prev, check{at: later, before: 4 << 20, after: 4 << 20, largest: 512 << 10, lim: lim}, flood, 5 * time.Millisecond, flood / 2},
		{"at a limit", prev, check{at: later, before: 5 << 20, after: 5 << 20, largest: 1 << 20, lim: lim}, 0, 0, 10 << 20},
	} {
		got, rate := pace(c.prev, c.c, c.rate)
		if got != c.want || rate != c.wantRate {
			t.Errorf("%s: wait %v rate %.0f, want %v %.0f", c.name, got, rate, c.want, c.wantRate)
		}
	}
}

// A panic in the keeper is logged and the keeper starts again: stopped
// for good, it left the log sizes unenforced until the next boot.
func TestKeeperStartsAgainAfterAPanic(t *testing.T) {
	old := restartAfter
	restartAfter = 10 * time.Millisecond
	t.Cleanup(func() { restartAfter = old })
	dir := t.TempDir()
	big := writeAged(t, dir, "1/app/console.log", 5000, 0)
	var calls atomic.Int32
	var buf syncBuffer
	k := &Keeper{Dir: dir, Current: filepath.Join(dir, "1"), Log: slog.New(slog.NewTextHandler(&buf, nil)),
		LimitsNow: func() Limits {
			if calls.Add(1) == 1 {
				panic("a bug")
			}
			return Limits{MaxFile: 1000}
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if fi, _ := os.Stat(big); fi != nil && fi.Size() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not rotated after the panic; log:\n%s", buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if !strings.Contains(buf.String(), "log keeper panicked") {
		t.Errorf("the panic is not logged:\n%s", buf.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the keeper's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

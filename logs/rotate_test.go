package logs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
		return nil
	})
	return total
}

// A file over MaxFile is rotated: its content in .1, the file emptied,
// and a writer appending to it carries on at the new end.
func TestRotateKeepsTheWriterWriting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0", "app", "console.log")
	os.MkdirAll(filepath.Dir(path), 0o755)
	w, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	first := bytes.Repeat([]byte("a"), 3000)
	w.Write(first)
	k := &Keeper{Dir: dir, Current: filepath.Join(dir, "0"), Limits: Limits{MaxFile: 1000}, Log: quiet()}
	k.Enforce()
	if got, _ := os.ReadFile(path + ".1"); !bytes.Equal(got, first[:1000]) {
		t.Fatalf(".1 holds %d bytes, want the last 1000 written", len(got))
	}
	w.Write([]byte("after"))
	if got, _ := os.ReadFile(path); string(got) != "after" {
		t.Fatalf("after rotation the file holds %q", got)
	}
	if k.Rotations.Load() != 1 {
		t.Errorf("rotations %d", k.Rotations.Load())
	}
}

// Over MaxDir, rotated copies go first, then other revisions' logs; the
// current revision's live logs are the last resort and are truncated, not
// removed (their writers hold them).
func TestSweepOrder(t *testing.T) {
	dir := t.TempDir()
	write := func(rel string, n int, age time.Duration) string { return writeAged(t, dir, rel, n, age) }
	live := write("1/app/console.log", 400, 0)
	rotated := write("1/app/console.log.1", 400, time.Minute)
	oldRev := write("0/app/console.log", 400, time.Hour)
	k := &Keeper{Dir: dir, Current: filepath.Join(dir, "1"), Limits: Limits{MaxDir: 900, Hysteresis: 4}, Log: quiet()}
	k.Enforce()
	// 1200 bytes, target 900-225 = 675: the rotated copy goes and the
	// old revision's log is emptied (a live log may still have a writer:
	// TestSweepNeverUnlinksAWrittenLog), the current one stays whole.
	if _, err := os.Stat(rotated); !os.IsNotExist(err) {
		t.Errorf("rotated copy kept")
	}
	if fi, err := os.Stat(oldRev); err != nil || fi.Size() != 0 {
		t.Errorf("old revision's log not emptied: %v %v", fi, err)
	}
	if fi, err := os.Stat(live); err != nil || fi.Size() != 400 {
		t.Errorf("live log: %v %v", fi, err)
	}
	write("1/other/console.log", 800, time.Second)
	k.Enforce()
	if got := dirSize(t, dir); got > 900 {
		t.Errorf("dir is %d bytes after the sweep", got)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live log was removed: %v", err)
	}
}

// A container printing 50 MB: the keeper, woken by inotify, holds the
// directory near its limit while the writer runs and under it after.
func TestFloodStaysUnderTheLimit(t *testing.T) {
	dir := t.TempDir()
	cur := filepath.Join(dir, "0")
	path := filepath.Join(cur, "flood", "console.log")
	k := &Keeper{Dir: dir, Current: cur, Limits: Limits{MaxFile: 2 << 20, MaxDir: 8 << 20, Hysteresis: 4}, Log: quiet()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	time.Sleep(50 * time.Millisecond) // the watch is set
	os.MkdirAll(filepath.Dir(path), 0o755)
	w, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	var peak int64
	for i := 0; i < 50<<20/len(chunk); i++ {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if i%16 == 0 {
			peak = max(peak, dirSize(t, dir))
		}
	}
	w.Close()
	// Measured between two checks: during one, a rotation's copy briefly
	// adds up to MaxFile, and a walk racing its rename counts a file
	// twice or not at all (CI once saw 8.9 MiB just after a walk had found it under 8).
	// With the writer gone, no check grows the tree.
	settled := func() int64 {
		k.mu.Lock()
		defer k.mu.Unlock()
		return dirSize(t, dir)
	}
	deadline := time.Now().Add(3 * time.Second)
	for settled() > k.Limits.MaxDir && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := settled(); got > k.Limits.MaxDir {
		t.Errorf("log dir %d bytes after the flood, limit %d", got, k.Limits.MaxDir)
	}
	t.Logf("peak %d MiB during a 50 MiB flood, limit %d MiB, %d rotations", peak>>20, k.Limits.MaxDir>>20, k.Rotations.Load())
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("the keeper did not stop with its context")
	}
}

// Over MaxDir with only the current revision's live logs left, the
// largest goes first: a container flooding its console loses its log, not
// pantavisor's own log nor the quiet containers' (older files). Before
// the fix the oldest went first, so a container of any role could erase
// pantavisor's log by printing fast.
func TestSweepTruncatesTheFloodFirst(t *testing.T) {
	dir := t.TempDir()
	write := func(rel string, n int, age time.Duration) string { return writeAged(t, dir, rel, n, age) }
	own := write("0/pantavisor/pantavisor.log", 300, time.Hour)
	quietCtr := write("0/quiet/console.log", 200, time.Minute)
	flood := write("0/flood/console.log", 2000, 0)
	k := &Keeper{Dir: dir, Current: filepath.Join(dir, "0"), Limits: Limits{MaxDir: 1000, Hysteresis: 4}, Log: quiet()}
	k.Enforce()
	for _, p := range []string{own, quietCtr} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("%s truncated for a flood elsewhere: %v", p, err)
		}
	}
	if fi, err := os.Stat(flood); err != nil || fi.Size() != 0 {
		t.Errorf("the flooded log was not truncated: %v %v", fi.Size(), err)
	}
}

// writeAged writes n bytes at dir/rel, its modification time age ago.
func writeAged(t *testing.T, dir, rel string, n int, age time.Duration) string {
	t.Helper()
	p := filepath.Join(dir, rel)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, bytes.Repeat([]byte("x"), n), 0o644); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-age)
	os.Chtimes(p, at, at)
	return p
}

// A container kept by a non-reboot update writes on in the log directory
// of the revision it was started in, which is not the current one. The
// sweep empties its log and the writer's next bytes are still seen (and
// kept within the limits). Before, the sweep unlinked it: the writer
// appended to a file no scan saw, which grew until the storage was full.
func TestSweepNeverUnlinksAWrittenLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "1", "kept", "console.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	k := &Keeper{Dir: dir, Current: filepath.Join(dir, "2"), Limits: Limits{MaxFile: 1000, MaxDir: 800}, Log: quiet()}
	w.Write(bytes.Repeat([]byte("x"), 900))
	k.Enforce()
	w.Write(bytes.Repeat([]byte("y"), 100))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the written log is gone: %v", err)
	}
	wfi, _ := w.Stat()
	if !os.SameFile(fi, wfi) || fi.Size() != wfi.Size() {
		t.Fatalf("the writer's file (%d bytes) is not the one at the path (%d bytes)", wfi.Size(), fi.Size())
	}
	if fi.Size() > 800 {
		t.Errorf("the log holds %d bytes, over the directory's limit", fi.Size())
	}
}

// A container with its log directory mounted that creates files without
// end (empty ones, which the size limits never see, or symlinks and
// FIFOs) would take every inode of the storage: no update, no object, no
// state written. Over MaxFiles, the files of the directory holding the
// most go first, down to the limit less the hysteresis; pantavisor's own
// log and the other containers' stay.
func TestFilesFloodStaysUnderTheCount(t *testing.T) {
	dir := t.TempDir()
	own := writeAged(t, dir, "0/pantavisor/pantavisor.log", 300, time.Hour)
	other := writeAged(t, dir, "0/quiet/console.log", 200, time.Minute)
	oldRev := writeAged(t, dir, "1/app/console.log", 10, time.Hour)
	flood := filepath.Join(dir, "1", "flood")
	os.MkdirAll(flood, 0o755)
	for i := range 1500 {
		p := filepath.Join(flood, fmt.Sprintf("f%d", i))
		var err error
		switch i % 3 {
		case 0:
			err = os.WriteFile(p, nil, 0o644)
		case 1:
			err = os.Symlink("/etc/passwd", p)
		case 2:
			err = unix.Mkfifo(p, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	k := &Keeper{Dir: dir, Current: filepath.Join(dir, "1"), Limits: Limits{MaxFile: 1 << 20, MaxDir: 1 << 20, MaxFiles: 1000, Hysteresis: 4}, Log: quiet()}
	k.Enforce()
	ents, err := os.ReadDir(flood)
	if err != nil {
		t.Fatal(err)
	}
	// 1503 files, 750 left (1000 less a quarter): the three others
	// stay, the flood keeps 747.
	if len(ents) != 747 {
		t.Errorf("the flooding directory holds %d files after the check, want 747", len(ents))
	}
	for _, f := range []string{own, other, oldRev} {
		if _, err := os.Lstat(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Errorf("a symlink's target: %v", err)
	}
}

// Two directories over their share are cut down to one level: the one
// holding the most is not emptied while the other keeps all of its own,
// and a small one keeps all; a directory's rotated copies go first.
func TestCountSweepLevelsTheLargest(t *testing.T) {
	dir := t.TempDir()
	for name, n := range map[string]int{"a": 600, "b": 300, "c": 5} {
		d := filepath.Join(dir, "0", name)
		os.MkdirAll(d, 0o755)
		for i := range n {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", i)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	rotated := writeAged(t, dir, "0/b/console.log.1", 1, 0)
	k := &Keeper{Dir: dir, Limits: Limits{MaxFiles: 500}, Log: quiet()}
	k.Enforce()
	// 906 files down to 500: a and b to 247 each, c's 5 kept.
	for name, want := range map[string]int{"a": 247, "b": 247, "c": 5} {
		if ents, _ := os.ReadDir(filepath.Join(dir, "0", name)); len(ents) != want {
			t.Errorf("%s holds %d files, want %d", name, len(ents), want)
		}
	}
	if _, err := os.Stat(rotated); !os.IsNotExist(err) {
		t.Errorf("a rotated copy kept while its directory lost live files: %v", err)
	}
}

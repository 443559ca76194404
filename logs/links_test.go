package logs

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// A container whose log directory is bind-mounted into it can put what it
// likes there, under any name, at any moment. The keeper, root, must never
// write, truncate or remove a file outside the tree through what the
// container planted: with the storage's state JSON as the target, that
// is a device that no longer boots.

// victim is a file outside the log tree standing for the storage's state
// JSON, and a check that it is unchanged.
func victim(t *testing.T) (string, func()) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "json")
	want := []byte(`{"#spec":"pantavisor-service-system@1"}`)
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, func() {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("the file outside the log tree was changed: %.40q (%d bytes, %v), want %q", got, len(got), err, want)
		}
	}
}

// The rotation's temporary file, planted beforehand as a symlink, was
// opened with O_CREAT|O_TRUNC through the link: the log's tail went over
// the file the link named.
func TestRotationDoesNotWriteThroughAPlantedTemporaryFile(t *testing.T) {
	dir := t.TempDir()
	target, unchanged := victim(t)
	log := writeAged(t, dir, "1/app/console.log", 3000, 0)
	if err := os.Symlink(target, log+".1.tmp"); err != nil {
		t.Fatal(err)
	}
	k := &Keeper{Dir: dir, Current: filepath.Join(dir, "1"), Limits: Limits{MaxFile: 1000}, Log: quiet()}
	k.Enforce()
	unchanged()
	if fi, err := os.Stat(log); err != nil || fi.Size() != 0 {
		t.Errorf("the log over its limit was not rotated: %v %v", fi, err)
	}
}

// swapOnWarn is a log handler that runs swap at the keeper's first
// warning: the container acting between the keeper's walk of the tree
// and its use of what the walk found.
type swapOnWarn struct {
	slog.Handler
	swap func()
	done bool
}

func (h *swapOnWarn) Enabled(context.Context, slog.Level) bool { return true }

func (h *swapOnWarn) Handle(ctx context.Context, r slog.Record) error {
	if !h.done {
		h.done = true
		h.swap()
	}
	return nil
}

// A directory the walk went through, replaced by a symlink before the
// keeper rotated (or, over the directory's limit, emptied) a file found
// in it: the rotation's copy and truncation, and the sweep's truncation,
// followed the link out of the tree. The swap is made at the keeper's
// first warning (a log whose rotation fails, its copy's name taken by a
// directory), which comes between the walk and both uses.
func TestKeeperDoesNotFollowADirectorySwappedForALink(t *testing.T) {
	for _, tc := range []struct {
		name string
		// failing is the log whose rotation warns, swapped the
		// directory of the file standing for the state JSON.
		failing, swapped string
		size             int
		lim              Limits
	}{
		// Walked after the failing log, and over MaxFile: rotated.
		{"rotation", "1/app/a/console.log", "1/app/b/json", 3000, Limits{MaxFile: 1000}},
		// Another revision's log, under MaxFile: emptied first by
		// the sweep.
		{"sweep", "1/app/a/console.log", "0/app/b/json", 900, Limits{MaxFile: 1000, MaxDir: 3500}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			target, unchanged := victim(t)
			writeAged(t, dir, tc.failing, 3000, 0)
			if err := os.MkdirAll(filepath.Join(dir, tc.failing+".1", "x"), 0o755); err != nil {
				t.Fatal(err)
			}
			writeAged(t, dir, tc.swapped, tc.size, 0)
			b := filepath.Join(dir, filepath.Dir(tc.swapped))
			h := &swapOnWarn{Handler: slog.DiscardHandler, swap: func() {
				if err := os.RemoveAll(b); err != nil {
					t.Error(err)
				}
				if err := os.Symlink(filepath.Dir(target), b); err != nil {
					t.Error(err)
				}
			}}
			k := &Keeper{Dir: dir, Current: filepath.Join(dir, "1"), Limits: tc.lim, Log: slog.New(h)}
			k.Enforce()
			if !h.done {
				t.Fatal("the keeper never warned: the swap was not made")
			}
			unchanged()
			if _, err := os.Lstat(filepath.Join(filepath.Dir(target), "json.1")); err == nil {
				t.Error("a rotated copy was made outside the log tree")
			}
		})
	}
}

package storage

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// nest makes a chain of depth directories below dir, as a container can
// in its volume (mkdir and chdir in a loop: no path is ever long), with
// a file at the bottom.
func nest(t *testing.T, dir string, depth int) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range depth {
		if err := unix.Mkdirat(fd, "d", 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, "d", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	f, err := unix.Openat(fd, "bottom", unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(f)
}

// withFileLimit runs fn with the process's descriptor limit at n, a
// device's: the kernel gives init 1024, raised by Go to the hard 4096.
func withFileLimit(t *testing.T, n uint64, fn func()) {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = n
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	fn()
}

// A container nests directories in its revision volume deeper than the
// supervisor has descriptors: the removal held one open per level, so GC
// of that revision failed with EMFILE at every attempt (its trail, logs,
// disks and objects never freed, the storage filling up), and each
// attempt left every other open of the supervisor failing meanwhile.
func TestGCRemovesAVolumeNestedDeeperThanTheDescriptorLimit(t *testing.T) {
	l := newLayout(t)
	install(t, l, "0", map[string]string{"app/root.squashfs": "factory root"})
	install(t, l, "1", map[string]string{"app/root.squashfs": "old root"})
	vol := l.RevisionDisk("1", "app", "data")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	nest(t, vol, 1500)
	var rep GCReport
	var err error
	withFileLimit(t, 256, func() { rep, err = l.GC(GCOptions{Keep: []string{"0"}}) })
	if err != nil {
		t.Fatalf("gc: %v", err)
	}
	if len(rep.Revisions) != 1 || rep.Revisions[0] != "1" {
		t.Errorf("revisions removed %v, want [1]", rep.Revisions)
	}
	if _, err := os.Lstat(filepath.Join(l.Root, "disks", "rev", "1")); !os.IsNotExist(err) {
		t.Errorf("revision 1's disks are still there: %v", err)
	}
}

// RemoveTree removes what os.RemoveAll would: a missing path is no error,
// a file or a symlink goes itself, never what a link names, and a
// directory of more names than one read returns goes whole.
func TestRemoveTreeAsRemoveAll(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "kept")
	if err := os.MkdirAll(filepath.Join(outside, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "sub", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "tree")
	many := filepath.Join(tree, "many")
	if err := os.MkdirAll(many, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 2500 {
		if err := os.WriteFile(filepath.Join(many, "f"+strconv.Itoa(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "sub"), filepath.Join(many, "link")); err != nil {
		t.Fatal(err)
	}
	nest(t, many, removeDepth*3+1)
	if err := RemoveTree(tree); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(tree); !os.IsNotExist(err) {
		t.Errorf("the tree is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "sub", "f")); err != nil {
		t.Errorf("a file a link in the tree named was removed: %v", err)
	}
	if err := RemoveTree(tree); err != nil {
		t.Errorf("a missing tree: %v", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if err := RemoveTree(file); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(file); !os.IsNotExist(err) {
		t.Errorf("the file is still there: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left in the directory: %v", ents)
	}
}

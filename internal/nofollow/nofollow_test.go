package nofollow

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRegular(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "outside")
	os.WriteFile(outside, []byte("outside"), 0o644)
	os.WriteFile(filepath.Join(dir, "file"), []byte("file"), 0o644)
	os.Symlink(outside, filepath.Join(dir, "link"))
	unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	d, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(d)
	for _, name := range []string{"link", "fifo", "sub"} {
		for _, flags := range []int{os.O_RDONLY, os.O_WRONLY | os.O_APPEND, os.O_WRONLY | os.O_CREATE} {
			done := make(chan error, 1)
			go func() {
				f, err := Regular(d, name, flags, 0o644)
				if err == nil {
					f.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, ErrNotRegular) {
					t.Errorf("%s (flags %#o): %v, want ErrNotRegular", name, flags, err)
				}
			case <-time.After(2 * time.Second):
				t.Fatalf("%s (flags %#o): still waiting after 2s", name, flags)
			}
		}
	}
	if _, err := Regular(d, "link", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); !errors.Is(err, unix.EEXIST) {
		t.Errorf("O_EXCL over a link: %v, want EEXIST", err)
	}
	if got, _ := os.ReadFile(outside); string(got) != "outside" {
		t.Errorf("the file a link names was changed: %q", got)
	}
	f, err := Regular(d, "file", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("+")
	f.Close()
	f, err = Regular(d, "new", os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got, _ := os.ReadFile(filepath.Join(dir, "file")); string(got) != "file+" {
		t.Errorf("file holds %q", got)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "new")); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("new: %v %v", fi, err)
	}
}

// Without a /proc that shows this process, the name is opened again and
// kept only when it is the inode checked, its flags as asked.
func TestReopenAt(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(dir, "b"), []byte("b"), 0o644)
	d, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(d)
	var st unix.Stat_t
	if err := unix.Fstatat(d, "a", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
	fd, err := reopenAt(d, "a", os.O_WRONLY|os.O_APPEND, &st)
	if err != nil {
		t.Fatal(err)
	}
	fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	unix.Close(fd)
	if fl&unix.O_NONBLOCK != 0 || fl&unix.O_APPEND == 0 {
		t.Errorf("flags %#o: want O_APPEND, not O_NONBLOCK", fl)
	}
	if _, err := reopenAt(d, "b", os.O_RDONLY, &st); !errors.Is(err, ErrNotRegular) {
		t.Errorf("another inode: %v, want ErrNotRegular", err)
	}
}

// A directory below the root that is a symlink is refused, not followed.
func TestDir(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "a", "b"), 0o755)
	os.Symlink(t.TempDir(), filepath.Join(root, "a", "l"))
	r, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(r)
	fd, err := Dir(r, "a/b", unix.O_PATH)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	for _, rel := range []string{"a/l", "a/l/..", "../" + filepath.Base(root)} {
		if fd, err := Dir(r, rel, unix.O_PATH); err == nil {
			unix.Close(fd)
			t.Errorf("%s opened", rel)
		}
	}
}

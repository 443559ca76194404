package driver

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMakeMountpoint(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	for _, d := range []string{"etc", "var"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// An image's symlinks point inside it, whatever they say: /var/run ->
	// /run, and a hostile one to where the host's directory would be.
	if err := os.Symlink("/run", filepath.Join(root, "var/run")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("loop", filepath.Join(root, "etc/loop")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "etc/evil")); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	uid, gid := os.Getuid(), os.Getgid()
	for _, c := range []struct {
		dest string
		file bool
		want string // made, relative to root
	}{
		{"/pantavisor/pv-ctrl", true, "pantavisor/pv-ctrl"},
		{"etc/a/b/", false, "etc/a/b"},
		{"/var/run/dbus", false, "run/dbus"},
		{"/etc/evil/x", true, strings.TrimPrefix(outside, "/") + "/x"},
		{"/../../etc/up", false, "etc/up"},
		{"/etc/loop/x", false, ""},
	} {
		err := makeMountpoint(fd, c.dest, c.file, uid, gid)
		if c.want == "" {
			if !errors.Is(err, unix.ELOOP) {
				t.Errorf("%s: %v, want ELOOP", c.dest, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.dest, err)
			continue
		}
		st, err := os.Lstat(filepath.Join(root, c.want))
		if err != nil {
			t.Errorf("%s: not made at %s: %v", c.dest, c.want, err)
			continue
		}
		if st.IsDir() == c.file {
			t.Errorf("%s: made a %v, want a file: %v", c.dest, st.Mode(), c.file)
		}
		// Made again: it exists, nothing to do.
		if err := makeMountpoint(fd, c.dest, c.file, uid, gid); err != nil {
			t.Errorf("%s, again: %v", c.dest, err)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "x")); err == nil {
		t.Errorf("a symlink in the image made a file outside it")
	}
}

func TestReachable(t *testing.T) {
	top := t.TempDir()
	rootfs := filepath.Join(top, "work", "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(top), top, filepath.Dir(rootfs)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if err := reachable(rootfs, 100000, 100000); err != nil {
		t.Errorf("0711 all the way: %v", err)
	}
	if err := os.Chmod(filepath.Dir(rootfs), 0o700); err != nil {
		t.Fatal(err)
	}
	err := reachable(rootfs, 100000, 100000)
	if err == nil || !strings.Contains(err.Error(), filepath.Dir(rootfs)+" is mode 0700") || !strings.Contains(err.Error(), "uid 100000") {
		t.Errorf("a 0700 directory above the root: %v", err)
	}
}

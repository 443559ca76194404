//go:build integration

package bootloader

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pantavisor/pv/internal/isolated"
)

// ext4Storage makes an ext4 filesystem image (mkfs.ext4 with extra
// options), mounts it through a loop device and returns the image and the
// mountpoint; it is unmounted when t ends.
func ext4Storage(t *testing.T, mkfsOpts ...string) (img, mnt string) {
	t.Helper()
	isolated.Require(t)
	dir := t.TempDir()
	img, mnt = filepath.Join(dir, "storage.img"), filepath.Join(dir, "mnt")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", append(append([]string{"-q", "-F"}, mkfsOpts...), img)...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	remount(t, img, mnt, false)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return img, mnt
}

// remount mounts img at mnt, unmounting it first when mounted (which
// writes every journaled change to its place).
func remount(t *testing.T, img, mnt string, mounted bool) {
	t.Helper()
	if mounted {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Fatalf("umount: %v: %s", err, out)
		}
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
}

// rawFile is the file at path of the filesystem in img as a bootloader
// reads it: debugfs reads the image without replaying its journal, as
// GRUB's and U-Boot's ext4 drivers do. It is copied to a file of its own
// under a temporary directory, whose path is returned.
func rawFile(t *testing.T, img, path string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(path))
	if b, err := exec.Command("debugfs", "-R", "dump "+path+" "+out, img).CombinedOutput(); err != nil {
		t.Fatalf("debugfs dump %s: %v: %s", path, err, b)
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatalf("debugfs found no %s: %v", path, err)
	}
	return out
}

// An environment saved on ext4 is what the bootloader reads right after
// Save returns, journal or not: a power cut then boots on it.
func TestSavedEnvIsWhereTheBootloaderReads(t *testing.T) {
	if _, err := exec.LookPath("debugfs"); err != nil {
		t.Skip("no debugfs (e2fsprogs)")
	}
	old := Env{"pv_rev": "0"}
	next := Env{"pv_rev": "0", "pv_try": "locals/next"}
	backends := []struct {
		name string
		file string // in the storage
		// on is the backend keeping its env at path: on the storage,
		// then the file the bootloader reads.
		on func(path string) Backend
	}{
		{"grub", "boot/grubenv", func(path string) Backend { return Grub{Dir: filepath.Dir(path)} }},
		{"uboot.txt", "boot/uboot.txt", func(path string) Backend { return Uboot{Dir: filepath.Dir(path)} }},
		{"u-boot env file", "boot/uboot.env", func(path string) Backend {
			return UbootEnv{Copies: []EnvCopy{{Device: path, Size: 0x4000}}}
		}},
	}
	for _, journal := range []bool{true, false} {
		opts, what := []string(nil), "journal"
		if !journal {
			opts, what = []string{"-O", "^has_journal"}, "no journal"
		}
		for _, b := range backends {
			t.Run(what+"/"+b.name, func(t *testing.T) {
				img, mnt := ext4Storage(t, opts...)
				path := filepath.Join(mnt, b.file)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				// A U-Boot env is written into its file, which exists.
				if err := os.WriteFile(path, make([]byte, 0x4000), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := b.on(path).Save(old); err != nil {
					t.Fatal(err)
				}
				remount(t, img, mnt, true) // the old env is on disk for good
				if err := b.on(path).Save(next); err != nil {
					t.Fatal(err)
				}
				got, err := b.on(rawFile(t, img, "/"+b.file)).Load()
				if err != nil {
					t.Fatalf("the bootloader's read: %v", err)
				}
				if !maps.Equal(got, next) {
					t.Errorf("the bootloader reads %v, want %v (the old env was %v)", got, next, old)
				}
			})
		}
	}
}

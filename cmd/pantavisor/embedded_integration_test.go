//go:build integration

package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/internal/isolated"
)

// Upstream's stock pantavisor.config names the storage by its label; the
// disk carrying it shows up after the supervisor starts waiting (USB
// storage), and the supervisor mounts it.
func TestMountStorageByLabel(t *testing.T) {
	isolated.Require(t)
	for _, tool := range []string{"/usr/sbin/mkfs.ext4", "/usr/sbin/losetup"} {
		if _, err := os.Stat(tool); err != nil {
			t.Skipf("%s: %v", tool, err)
		}
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	label := "pvt-" + hex.EncodeToString(b) // no device of the host's has it
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "storage.img"), filepath.Join(dir, "storage")
	if out, err := exec.Command("/usr/sbin/mkfs.ext4", "-q", "-F", "-L", label, img, "2M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	cfg := config.New()
	conf := fmt.Sprintf("PV_STORAGE_DEVICE=LABEL=%s\nPV_STORAGE_MNTPOINT=%s\nPV_STORAGE_WAIT=10\n", label, mnt)
	if _, err := cfg.LoadBoot(config.BootSources{Conf: []byte(conf)}); err != nil {
		t.Fatal(err)
	}

	type attached struct {
		dev string
		err error
	}
	late := make(chan attached, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		out, err := exec.Command("/usr/sbin/losetup", "--find", "--show", img).CombinedOutput()
		if err != nil {
			err = fmt.Errorf("losetup: %w: %s", err, out)
		}
		late <- attached{strings.TrimSpace(string(out)), err}
	}()
	mountErr := mountStorage(cfg, slog.New(slog.NewTextHandler(t.Output(), nil)))
	loop := <-late
	if loop.err != nil {
		t.Fatal(loop.err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("/usr/sbin/losetup", "--detach", loop.dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", loop.dev, err, out)
		}
	})
	if mountErr != nil {
		t.Fatalf("mountStorage: %v", mountErr)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, 0) })

	var onMnt, dev unix.Stat_t
	if err := unix.Stat(mnt, &onMnt); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(loop.dev, &dev); err != nil {
		t.Fatal(err)
	}
	if onMnt.Dev != dev.Rdev {
		t.Errorf("%s is on device %d:%d, not %s's %d:%d", mnt, unix.Major(onMnt.Dev), unix.Minor(onMnt.Dev),
			loop.dev, unix.Major(dev.Rdev), unix.Minor(dev.Rdev))
	}
}

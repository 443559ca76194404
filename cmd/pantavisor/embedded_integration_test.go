//go:build integration

package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/blockdev"
	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/internal/disktest"
	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/internal/stuckdev"
)

// Upstream's stock pantavisor.config names the storage by its label; the
// disk carrying it shows up after the supervisor starts waiting (USB
// storage), and the supervisor mounts it.
func TestMountStorageByLabel(t *testing.T) {
	isolated.Require(t)
	requireTools(t)
	label := randomLabel(t)
	img, mnt := ext4Image(t, label), filepath.Join(t.TempDir(), "storage")
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

// Device makers name the storage partition as the kernel's root= does:
// by its GPT entry's unique GUID or name. The disk shows up after the
// supervisor starts waiting, and it mounts the partition.
func TestMountStorageByPartition(t *testing.T) {
	isolated.Require(t)
	requireTools(t)
	for _, key := range []string{"PARTUUID", "PARTLABEL"} {
		t.Run(key, func(t *testing.T) {
			uuid, name := randomGUID(t), randomLabel(t)
			fs, err := os.ReadFile(ext4Image(t, randomLabel(t)))
			if err != nil {
				t.Fatal(err)
			}
			const first = 2048 // the filesystem's first sector on the disk
			img := disktest.GPT(t, 512, []disktest.GPTPart{{UUID: uuid, Name: name, First: first, Last: first + uint64(len(fs))/512 - 1}})
			copy(img[first*512:], fs)
			value := map[string]string{"PARTUUID": uuid, "PARTLABEL": name}[key]
			mnt := filepath.Join(t.TempDir(), "storage")
			cfg := config.New()
			conf := fmt.Sprintf("PV_STORAGE_DEVICE=%s=%s\nPV_STORAGE_MNTPOINT=%s\nPV_STORAGE_WAIT=10\n", key, value, mnt)
			if _, err := cfg.LoadBoot(config.BootSources{Conf: []byte(conf)}); err != nil {
				t.Fatal(err)
			}

			type attached struct {
				disk string
				err  error
			}
			attach := disktest.Attacher(t, disktest.Write(t, img), 512)
			late := make(chan attached, 1)
			go func() {
				time.Sleep(300 * time.Millisecond)
				disk, err := attach()
				late <- attached{disk, err}
			}()
			mountErr := mountStorage(cfg, slog.New(slog.NewTextHandler(t.Output(), nil)))
			disk := <-late
			if disk.err != nil {
				t.Fatal(disk.err)
			}
			if mountErr != nil {
				t.Fatalf("mountStorage: %v", mountErr)
			}
			t.Cleanup(func() { _ = unix.Unmount(mnt, 0) })

			part := disktest.Part(disk.disk, 1)
			var onMnt, dev unix.Stat_t
			if err := unix.Stat(mnt, &onMnt); err != nil {
				t.Fatal(err)
			}
			if err := unix.Stat(part, &dev); err != nil {
				t.Fatal(err)
			}
			if onMnt.Dev != dev.Rdev {
				t.Errorf("%s is on device %d:%d, not %s's %d:%d", mnt, unix.Major(onMnt.Dev), unix.Minor(onMnt.Dev),
					part, unix.Major(dev.Rdev), unix.Minor(dev.Rdev))
			}
		})
	}
}

// randomGUID is a version 4 GUID no partition of the host's has.
func randomGUID(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[6], b[8] = b[6]&0x0F|0x40, b[8]&0x3F|0x80
	h := hex.EncodeToString(b)
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}

func requireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"/usr/sbin/mkfs.ext4", "/usr/sbin/losetup"} {
		if _, err := os.Stat(tool); err != nil {
			t.Skipf("%s: %v", tool, err)
		}
	}
}

// randomLabel is a filesystem label no device of the host's has.
func randomLabel(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "pvt-" + hex.EncodeToString(b)
}

// ext4Image makes a 2 MiB ext4 image labelled label.
func ext4Image(t *testing.T, label string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "storage.img")
	if out, err := exec.Command("/usr/sbin/mkfs.ext4", "-q", "-F", "-L", label, img, "2M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return img
}

// A device whose reads never return (a suspended dm volume, a dead USB
// stick) does not keep the storage from being found. A label no readable
// device carries is waited for up to PV_STORAGE_WAIT, then refused with
// the stuck device named; one that a disk probed late carries is found on
// it, though the stuck device carries it too, and the stuck one is named
// for the log.
func TestWaitStorageStuckDevice(t *testing.T) {
	isolated.Require(t)
	requireTools(t)
	label := randomLabel(t)
	stuck := stuckdev.New(t, ext4Image(t, label))

	const wait = 3 * time.Second
	start := time.Now()
	_, unread, err := waitStorage("LABEL="+randomLabel(t), wait)
	waited := time.Since(start)
	if !errors.Is(err, blockdev.ErrNotFound) || !strings.Contains(err.Error(), "PV_STORAGE_WAIT") || !strings.Contains(err.Error(), stuck.Node) {
		t.Errorf("waitStorage(unknown label) = %v; want ErrNotFound after PV_STORAGE_WAIT naming %s", err, stuck.Node)
	}
	if !slices.ContainsFunc(unread, named(stuck.Node)) {
		t.Errorf("waitStorage(unknown label): unread = %v, want %s in it", unread, stuck.Node)
	}
	if waited < wait || waited > 2*wait {
		t.Errorf("gave up after %v; PV_STORAGE_WAIT is %v", waited, wait)
	}
	if stuck.Held() == 0 {
		t.Fatalf("no read of %s held: the wait did not probe it", stuck.Node)
	}

	img := ext4Image(t, label)
	late := make(chan string, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		out, err := exec.Command("/usr/sbin/losetup", "--find", "--show", "--read-only", img).CombinedOutput()
		if err != nil {
			t.Errorf("losetup: %v: %s", err, out)
		}
		late <- strings.TrimSpace(string(out))
	}()
	dev, unread, err := waitStorage("LABEL="+label, 10*time.Second)
	good := <-late
	if good != "" {
		t.Cleanup(func() {
			if out, err := exec.Command("/usr/sbin/losetup", "--detach", good).CombinedOutput(); err != nil {
				t.Errorf("losetup --detach %s: %v: %s", good, err, out)
			}
		})
	}
	if err != nil || dev != good || !slices.ContainsFunc(unread, named(stuck.Node)) {
		t.Errorf("waitStorage(LABEL=%s) = %q, %v, %v; want %s, with %s unread", label, dev, unread, err, good, stuck.Node)
	}
}

// named is whether an entry of Resolve's unread ("node: why") names node.
func named(node string) func(string) bool {
	return func(u string) bool { return strings.HasPrefix(u, node+": ") }
}

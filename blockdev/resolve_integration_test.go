//go:build integration

package blockdev

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/internal/stuckdev"
)

// randomHex is n random bytes in hex: labels and UUIDs no device of the
// host carries.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func randomUUID(t *testing.T) string {
	h := randomHex(t, 16)
	return fmt.Sprintf("%s-%s-4%s-8%s-%s", h[0:8], h[8:12], h[13:16], h[17:20], h[20:32])
}

// ext4Image makes a 2 MiB ext4 image with label and uuid.
func ext4Image(t *testing.T, label, uuid string) string {
	t.Helper()
	mkfs := "/usr/sbin/mkfs.ext4"
	if _, err := os.Stat(mkfs); err != nil {
		t.Skipf("%s: %v", mkfs, err)
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	if out, err := exec.Command(mkfs, "-q", "-F", "-L", label, "-U", uuid, img, "2M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return img
}

// attach binds img to a free loop device, detached when t ends.
func attach(t *testing.T, img string) string {
	t.Helper()
	losetup, err := exec.LookPath("losetup")
	if err != nil {
		if losetup, err = exec.LookPath("/usr/sbin/losetup"); err != nil {
			t.Skip("no losetup")
		}
	}
	out, err := exec.Command(losetup, "--find", "--show", "--read-only", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup %s: %v: %s", img, err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(losetup, "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

func TestResolveLoopExt4(t *testing.T) {
	isolated.Require(t)
	label, uuid := "pvt-"+randomHex(t, 6), randomUUID(t)
	img := ext4Image(t, label, uuid)

	// Not there yet: what a caller waits on.
	if dev, _, err := Resolve("LABEL=" + label); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Resolve(LABEL=%s) before attaching = %q, %v; want ErrNotFound", label, dev, err)
	}
	loop := attach(t, img)
	for _, spec := range []string{"LABEL=" + label, `LABEL="` + label + `"`, "UUID=" + uuid, "UUID=" + strings.ToUpper(uuid)} {
		if dev, _, err := Resolve(spec); err != nil || dev != loop {
			t.Errorf("Resolve(%s) = %q, %v; want %s", spec, dev, err, loop)
		}
	}
	unknown := "LABEL=pvt-" + randomHex(t, 6)
	dev, _, err := Resolve(unknown)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), unknown) {
		t.Errorf("Resolve(%s) = %q, %v; want ErrNotFound naming the spec", unknown, dev, err)
	}
}

func TestResolveLoopFAT(t *testing.T) {
	isolated.Require(t)
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	id := binary.LittleEndian.Uint32(b)
	label := "PV" + strings.ToUpper(randomHex(t, 4)) // 10 of FAT's 11 characters
	img := fatVolume{sector: fatBootSector(false, label, id), root: [][]byte{dirEntry(label, 0x08, 0)}}.write(t)
	loop := attach(t, img)
	uuid := fmt.Sprintf("%04X-%04X", id>>16, id&0xFFFF)
	for _, spec := range []string{"LABEL=" + label, "UUID=" + uuid, "UUID=" + strings.ToLower(uuid)} {
		if dev, _, err := Resolve(spec); err != nil || dev != loop {
			t.Errorf("Resolve(%s) = %q, %v; want %s", spec, dev, err, loop)
		}
	}
}

// Two devices with the label: neither is mounted, since either may be
// the wrong storage.
func TestResolveLoopDuplicate(t *testing.T) {
	isolated.Require(t)
	label := "pvt-" + randomHex(t, 6)
	a := attach(t, ext4Image(t, label, randomUUID(t)))
	b := attach(t, ext4Image(t, label, randomUUID(t)))
	dev, _, err := Resolve("LABEL=" + label)
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), b) {
		t.Fatalf("Resolve(LABEL=%s) = %q, %v; want an error naming %s and %s", label, dev, err, a, b)
	}
}

// A device whose reads never return (a suspended device-mapper volume, a
// dead USB stick; here a loop device whose reads stuckdev holds) does not
// stop the scan: the readable device with the label is used and the stuck
// one named. Later calls pass it over at once rather than start another
// reader stuck beside the first. Once it answers it counts again, and as
// it carries the label too, the two are refused.
func TestResolveStuckDevice(t *testing.T) {
	isolated.Require(t)
	label := "LABEL=pvt-" + randomHex(t, 6)
	stuck := stuckdev.New(t, ext4Image(t, strings.TrimPrefix(label, "LABEL="), randomUUID(t)))
	// Run before the device is detached, on failure too: no probe is
	// left stuck when the test ends.
	t.Cleanup(func() { stuck.Resume(); waitProbes(t) })
	good := attach(t, ext4Image(t, strings.TrimPrefix(label, "LABEL="), randomUUID(t)))

	start := time.Now()
	dev, unread, err := Resolve(label)
	if err != nil || dev != good || !slices.Contains(unread, stuck.Node) {
		t.Fatalf("Resolve(%s) = %q, %v, %v; want %s, %s named as unread", label, dev, unread, err, good, stuck.Node)
	}
	if took := time.Since(start); took > probeTimeout+time.Second {
		t.Errorf("Resolve took %v, probeTimeout is %v", took, probeTimeout)
	}
	if stuck.Held() == 0 {
		t.Fatalf("no read of %s held: the scan did not reach it", stuck.Node)
	}

	settle := func() int { time.Sleep(100 * time.Millisecond); return runtime.NumGoroutine() }
	before := settle()
	unknown := "LABEL=pvt-" + randomHex(t, 6)
	for range 10 {
		start := time.Now()
		_, unread, err := Resolve(unknown)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), stuck.Node) || !slices.Contains(unread, stuck.Node) {
			t.Fatalf("Resolve(%s) = %v, %v; want ErrNotFound naming %s", unknown, unread, err, stuck.Node)
		}
		if took := time.Since(start); took >= probeTimeout {
			t.Fatalf("Resolve(%s) waited %v on %s, whose first probe is still stuck", unknown, took, stuck.Node)
		}
	}
	if after := settle(); after > before+3 {
		t.Errorf("%d goroutines after 10 more calls, %d before: probes pile up on %s", after, before, stuck.Node)
	}

	stuck.Resume()
	waitProbes(t)
	dev, unread, err = Resolve(label)
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), good) || !strings.Contains(err.Error(), stuck.Node) || len(unread) > 0 {
		t.Errorf("Resolve(%s) after resuming = %q, %v, %v; want an error naming %s and %s", label, dev, unread, err, good, stuck.Node)
	}
}

// waitProbes waits for every probe still running to end.
func waitProbes(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		probing.Lock()
		n := len(probing.rdev)
		probing.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d probes still running 10s after their devices answered", n)
			return
		}
	}
}

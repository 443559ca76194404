//go:build integration

package stuckdev

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A read of the device waits while it is suspended and returns the
// image's bytes once it is resumed: the helper the stuck-device tests
// stand on really stalls a reader.
func TestDeviceHoldsReads(t *testing.T) {
	img := randomImage(t)
	d := New(t, writeImage(t, img))
	done := stuckRead(t, d)
	d.Resume()
	select {
	case r := <-done:
		if r.err != nil || !bytes.Equal(r.b, img[8192:8192+4096]) {
			t.Errorf("read of resumed %s = %d bytes, %v; want the image's 4096 at 8192", d.Node, len(r.b), r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("read of %s still stuck 10s after Resume", d.Node)
	}
}

// When the server dies (the test crashed), the reads it held fail at
// once rather than stay stuck: nothing is left hanging on the host.
func TestDeviceServerDeath(t *testing.T) {
	d := New(t, writeImage(t, randomImage(t)))
	done := stuckRead(t, d)
	if err := d.server.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err == nil {
			t.Errorf("read of %s after its server died = %d bytes, no error; want an I/O error", d.Node, len(r.b))
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("read of %s still stuck 10s after its server died", d.Node)
	}
}

// A failed device's reads fail with EIO, as a dying disk's do, at once.
func TestDeviceFail(t *testing.T) {
	d := New(t, writeImage(t, randomImage(t)))
	d.Fail()
	fd, err := unix.Open(d.Node, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if n, err := unix.Pread(fd, make([]byte, 4096), 8192); !errors.Is(err, unix.EIO) {
		t.Errorf("read of failed %s = %d bytes, %v; want EIO", d.Node, n, err)
	}
}

func randomImage(t *testing.T) []byte {
	img := make([]byte, 1<<20)
	if _, err := rand.Read(img); err != nil {
		t.Fatal(err)
	}
	return img
}

func writeImage(t *testing.T, img []byte) string {
	path := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type readResult struct {
	b   []byte
	err error
}

// stuckRead starts reading 4096 bytes at 8192 of d, and checks that the
// read waits.
func stuckRead(t *testing.T, d *Device) <-chan readResult {
	t.Helper()
	done := make(chan readResult, 1)
	go func() {
		fd, err := unix.Open(d.Node, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- readResult{nil, err}
			return
		}
		defer unix.Close(fd)
		b := make([]byte, 4096)
		n, err := unix.Pread(fd, b, 8192)
		done <- readResult{b[:max(n, 0)], err}
	}()
	select {
	case r := <-done:
		t.Fatalf("read of suspended %s returned: %d bytes, %v", d.Node, len(r.b), r.err)
	case <-time.After(500 * time.Millisecond):
	}
	if d.Held() == 0 {
		t.Errorf("no read of %s held, yet the reader waits", d.Node)
	}
	return done
}

// A writable device holds its writes while suspended: the sync of a file
// system on it waits, and ends once the device is resumed, with what was
// written there to read back.
func TestWritableDeviceHoldsWrites(t *testing.T) {
	d, mnt := MountedExt4(t)
	want := randomImage(t)
	if err := os.WriteFile(filepath.Join(mnt, "f"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	d.Suspend()
	done := make(chan error, 1)
	go func() {
		fd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		err = unix.Syncfs(fd)
		unix.Close(fd) // before the answer: the unmount below finds it closed
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("syncfs of %s on suspended %s returned: %v", mnt, d.Node, err)
	case <-time.After(500 * time.Millisecond):
	}
	if d.Held() == 0 {
		t.Errorf("no write of %s held, yet syncfs waits", d.Node)
	}
	d.Resume()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("syncfs after resume: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("syncfs of %s still stuck 10s after Resume", mnt)
	}
	// Read back from the device, not from the page cache.
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(d.Node, mnt, "ext4", unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "f"))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("read back %d bytes, %v; want the %d written", len(got), err, len(want))
	}
}

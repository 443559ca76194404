package wayland

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/xconnect"
)

// A client's shared-memory buffer (a memfd, as wl_shm pools are) reaches
// the compositor usable: it maps what the client wrote.
func TestShmBufferReachesTheCompositor(t *testing.T) {
	dir := t.TempDir()
	comp := filepath.Join(dir, "wayland-0")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: comp, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		buf, oob := make([]byte, 64), make([]byte, 64)
		_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			got <- err.Error()
			return
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		if len(msgs) != 1 {
			got <- "no descriptor"
			return
		}
		fds, _ := unix.ParseUnixRights(&msgs[0])
		mem, err := unix.Mmap(fds[0], 0, 4096, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(mem[:6])
		unix.Munmap(mem)
		unix.Close(fds[0])
	}()

	p := New(xconnect.Config{Stats: &xconnect.Stats{}, Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", comp)
	}})
	cl, err := net.Listen("unix", filepath.Join(dir, "client-side"))
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(cl)
	defer p.Close()

	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: filepath.Join(dir, "client-side"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fd, err := unix.MemfdCreate("wl_shm", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	unix.Ftruncate(fd, 4096)
	mem, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	copy(mem, "pixels")
	unix.Munmap(mem)
	// wl_shm.create_pool: a request with the pool's descriptor.
	if _, _, err := c.WriteMsgUnix([]byte("create_pool"), unix.UnixRights(fd), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "pixels" {
			t.Fatalf("compositor mapped %q", s)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("nothing reached the compositor")
	}
}

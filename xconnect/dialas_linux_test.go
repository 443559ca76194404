package xconnect

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/isolated"
)

func TestMain(m *testing.M) {
	HelperMain()
	isolated.Loopback() // run by the integration runner: a fresh netns
	os.Exit(m.Run())
}

// The socket DialAs returns was connected by the uid and gid asked for:
// its peer sees them in SO_PEERCRED.
func TestDialAsConnectsWithTheCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir() // 0700: the helper's uid cannot traverse it
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "bus.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Chmod(path, 0o666)
	creds := make(chan *unix.Ucred, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			creds <- nil
			return
		}
		defer c.Close()
		raw, _ := c.SyscallConn()
		raw.Control(func(fd uintptr) {
			u, _ := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
			creds <- u
		})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := DialAs(ctx, 0, path, 1001, 1002)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u := <-creds
	if u == nil || u.Uid != 1001 || u.Gid != 1002 {
		t.Fatalf("peer credentials %+v, want uid 1001 gid 1002", u)
	}
}

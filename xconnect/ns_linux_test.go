package xconnect

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// chrooted starts a process whose root is a fresh directory (with a static
// busybox to run sleep) and returns its pid and that root.
func chrooted(t *testing.T) (int, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs a static busybox")
	}
	root := t.TempDir()
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/busybox", "sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid, root
}

// A container's symlinks, absolute or with "..", resolve inside its root:
// they can never lead pantavisor to a host file.
func TestOpenInStaysInsideTheContainer(t *testing.T) {
	pid, root := chrooted(t)
	host := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(host, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "mine"), []byte("container"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct{ name, to string }{
		{"abs", host},                          // absolute: the host path, inside the root
		{"up", "../../../../../../../" + host}, // dot-dot beyond the root
		{"ok", "/mine"},
	} {
		if err := os.Symlink(l.to, filepath.Join(root, l.name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"/abs", "/up", host, "/../../../../" + host} {
		if f, err := OpenIn(pid, p); err == nil {
			got, _ := os.Readlink("/proc/self/fd/" + itoa(int(f.Fd())))
			f.Close()
			if !strings.HasPrefix(got, root) {
				t.Errorf("OpenIn(%q) reached %s, outside the container's root", p, got)
			}
		}
	}
	f, err := OpenIn(pid, "/ok")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, _ := os.Readlink("/proc/self/fd/" + itoa(int(f.Fd()))); got != filepath.Join(root, "mine") {
		t.Errorf("a symlink inside the root went to %s", got)
	}
}

// DialUnixIn connects to a socket inside the container's root; a symlink
// there that names a host socket leads nowhere.
func TestDialUnixInStaysInsideTheContainer(t *testing.T) {
	pid, root := chrooted(t)
	hostSock := filepath.Join(t.TempDir(), "host.sock")
	hl, err := net.Listen("unix", hostSock)
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	inner, err := net.Listen("unix", filepath.Join(root, "svc.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	go func() {
		for {
			c, err := inner.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("inner"))
			c.Close()
		}
	}()
	if err := os.Symlink(hostSock, filepath.Join(root, "evil.sock")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c, err := DialUnixIn(ctx, pid, "/evil.sock"); err == nil {
		c.Close()
		t.Fatal("a container's symlink led to a host socket")
	}
	c, err := DialUnixIn(ctx, pid, "/svc.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if b, _ := io.ReadAll(c); string(b) != "inner" {
		t.Fatalf("read %q", b)
	}
}

// ListenUnix refuses to replace what is not a socket, replaces a stale
// socket, and its Injected removes only what it made.
func TestListenUnixOnTheHost(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a", "b", "s.sock")
	ln, inj, err := ListenUnix(0, path)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // leaves the file: it is in the consumer's namespace
	if fi, err := os.Stat(path); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket after close: %v %v", fi, err)
	}
	ln2, inj2, err := ListenUnix(0, path) // a stale socket is replaced
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if err := inj.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal("the first link's removal removed the second's socket")
	}
	if err := inj2.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket still there: %v", err)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ListenUnix(0, path); err == nil {
		t.Fatal("a directory at the target was replaced")
	}
	if _, _, err := ListenUnix(0, "relative.sock"); err == nil {
		t.Fatal("a relative target was accepted")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// A byte relay's listener gives its connections TCP keep-alive probes;
// an HTTP server's does not (its timeouts end a vanished peer's
// connection, and the probes cost four setsockopt calls per connection).
func TestListenTCPKeepAlive(t *testing.T) {
	for _, keep := range []bool{true, false} {
		ln, err := ListenTCP(0, "127.0.0.1:0", keep)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		a, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := a.(*net.TCPConn).SyscallConn()
		var on int
		rc.Control(func(fd uintptr) { on, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) })
		if err != nil || (on != 0) != keep {
			t.Errorf("keepAlive %v: SO_KEEPALIVE %d, %v", keep, on, err)
		}
		a.Close()
		c.Close()
		ln.Close()
	}
}

package xconnect

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/nstest"
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

// swapInSymlinks renames a symlink to target over path whenever path is a
// node of the given type, as a consumer that can write the target's
// directory could, until stop is called.
func swapInSymlinks(t *testing.T, path, target string, typ uint32) (stop func()) {
	var quit atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		tmp := path + ".swap"
		for !quit.Load() {
			os.Remove(tmp)
			os.Symlink(target, tmp)
			var st unix.Stat_t
			if unix.Lstat(path, &st) == nil && st.Mode&unix.S_IFMT == typ {
				os.Rename(tmp, path)
			}
		}
	}()
	return func() { quit.Store(true); <-done }
}

// The consumer end gets its mode when it is made, not by a chmod of its
// path afterwards: a consumer renaming a symlink over the new socket or
// node must not get another file's mode changed. With a chmod by path
// the file below was 0666 after 10 to 243 tries.
func TestConsumerEndsAreNotChmodedThroughASymlink(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root (mknod)")
	}
	var null unix.Stat_t
	if err := unix.Stat("/dev/null", &null); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		typ  uint32
		make func(path string) error
	}{
		{"socket", unix.S_IFSOCK, func(path string) error {
			ln, _, err := ListenUnix(0, path)
			if err == nil {
				ln.Close()
			}
			return err
		}},
		{"device node", unix.S_IFCHR, func(path string) error {
			_, err := Mknod(0, path, unix.S_IFCHR|0o666, null.Rdev, 0, 0)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			secret := filepath.Join(dir, "secret")
			if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "run", "end")
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			stop := swapInSymlinks(t, path, secret, tc.typ)
			defer stop()
			for i := 0; i < 1000; i++ {
				if tc.make(path) != nil {
					os.Remove(path)
				}
				if fi, err := os.Stat(secret); err != nil || fi.Mode().Perm() != 0o600 {
					t.Fatalf("after %d ends made: %s is %v (%v)", i+1, secret, fi.Mode().Perm(), err)
				}
			}
		})
	}
}

// Modes come out exact whatever the process's umask, and the thread that
// made them leaves the process's umask as it was.
func TestConsumerEndModesWithoutChmod(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root (mknod)")
	}
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	dir := t.TempDir()
	ln, inj, err := ListenUnix(0, filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	defer inj.Remove()
	var null unix.Stat_t
	unix.Stat("/dev/null", &null)
	dinj, err := Mknod(0, filepath.Join(dir, "dev", "n"), unix.S_IFCHR|0o640, null.Rdev, 12, 34)
	if err != nil {
		t.Fatal(err)
	}
	defer dinj.Remove()
	var s, d unix.Stat_t
	unix.Lstat(filepath.Join(dir, "s.sock"), &s)
	unix.Lstat(filepath.Join(dir, "dev", "n"), &d)
	if s.Mode != unix.S_IFSOCK|0o666 || d.Mode != unix.S_IFCHR|0o640 || d.Uid != 12 || d.Gid != 34 {
		t.Errorf("socket %o, node %o %d:%d; want socket 140666, node 20640 12:34", s.Mode, d.Mode, d.Uid, d.Gid)
	}
	if now := unix.Umask(0o077); now != 0o077 {
		t.Errorf("the process's umask is %o after, want 077", now)
	}
}

// A device node the consumer had at the target before the link is its
// own: the link uses it as it is and leaves it when it goes.
func TestMknodLeavesTheConsumersOwnNode(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root (mknod)")
	}
	var null unix.Stat_t
	unix.Stat("/dev/null", &null)
	path := filepath.Join(t.TempDir(), "dev", "null")
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := unix.Mknod(path, unix.S_IFCHR|0o600, int(null.Rdev)); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	inj, err := Mknod(0, path, unix.S_IFCHR|0o666, null.Rdev, 4321, 4321)
	if err != nil {
		t.Fatal(err)
	}
	if !inj.Theirs {
		t.Error("the consumer's own node taken for the link's")
	}
	var st unix.Stat_t
	unix.Lstat(path, &st)
	if st.Mode != unix.S_IFCHR|0o600 || st.Uid != 0 {
		t.Errorf("the consumer's node is now %o owned by %d, want 20600 by 0", st.Mode, st.Uid)
	}
	if err := inj.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("removing the link removed the consumer's own node: %v", err)
	}
}

// Reading a file of a container never waits on what is not a regular
// file: a FIFO at the provider's /etc/passwd blocked the open, and a dbus
// link's every connection with it, for ever.
func TestReadFileInRefusesAFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "passwd")
	if err := unix.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := ReadFileIn(0, p, 1<<20); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a FIFO was read as a file")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadFileIn of a FIFO still waiting after 2 s")
	}
}

// A regular file whose read waits for data: the kernel's pseudo-files
// (a provider's /etc/passwd linked to /proc/kmsg, whose read also takes
// the kernel's messages from whoever collects them, or to a trace_pipe)
// are regular files of size 0. Reading one to its end blocked a dbus
// link's connection, and the goroutine serving it, for ever. Only the
// size the file says it has is read now. A tracing instance of the
// test's own stands for them: its trace_pipe is no one else's.
func TestReadFileInDoesNotWaitOnAPseudoFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a tracing instance needs root")
	}
	inst := filepath.Join("/sys/kernel/tracing/instances", "pv-readfilein-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(inst, 0o755); err != nil {
		t.Skipf("no tracing instance: %v", err)
	}
	done := make(chan error, 1)
	t.Cleanup(func() {
		// A read still waiting is given a line, which ends it (the
		// limit is a few bytes), before the instance goes.
		for range 100 {
			select {
			case <-done:
				os.Remove(inst)
				return
			default:
			}
			os.WriteFile(filepath.Join(inst, "trace_marker"), []byte("end of the test\n"), 0)
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("the read of %s never ended; the instance is left", inst)
	})
	passwd := filepath.Join(t.TempDir(), "passwd")
	if err := os.Symlink(filepath.Join(inst, "trace_pipe"), passwd); err != nil {
		t.Fatal(err)
	}
	var data []byte
	go func() {
		var err error
		data, err = ReadFileIn(0, passwd, 16)
		done <- err
	}()
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err == nil && len(data) != 0 {
			t.Errorf("read %q from a file of size 0", data)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadFileIn of a pseudo-file still waiting after 2 s")
	}
}

// A provider's socket that leads to pantavisor's control socket (a
// symlink, a hard link, or the control socket itself, which every
// container has bind-mounted) is never connected to: pantavisor would
// connect as itself, and the control socket take the consumer, or any
// ingress client, for the host. Before, it connected.
func TestProviderSocketsNeverLeadToTheControlSocket(t *testing.T) {
	dir := t.TempDir()
	ctrl := filepath.Join(dir, "pv-ctrl")
	ln, err := net.Listen("unix", ctrl)
	if err != nil {
		t.Fatal(err)
	}
	nstest.ServeEach(t, ln, func(c net.Conn) { c.Close() })
	if err := RefuseSocket(ctrl); err != nil {
		t.Fatal(err)
	}
	defer func() {
		refused.Lock()
		clear(refused.ids)
		refused.Unlock()
	}()
	sym, hard := filepath.Join(dir, "api.sock"), filepath.Join(dir, "hard.sock")
	if err := os.Symlink(ctrl, sym); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(ctrl, hard); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, p := range []string{ctrl, sym, hard} {
		if c, err := DialUnixIn(ctx, 0, p); !errors.Is(err, ErrRefusedSocket) {
			if c != nil {
				c.Close()
			}
			t.Errorf("DialUnixIn %s: %v, want ErrRefusedSocket", filepath.Base(p), err)
		}
		if c, err := DialAs(ctx, 0, p, 65534, 65534); !errors.Is(err, ErrRefusedSocket) {
			if c != nil {
				c.Close()
			}
			t.Errorf("DialAs %s: %v, want ErrRefusedSocket", filepath.Base(p), err)
		}
	}
	// Any other socket is still reached.
	other := filepath.Join(dir, "other.sock")
	oln, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	defer oln.Close()
	c, err := DialUnixIn(ctx, 0, other)
	if err != nil {
		t.Fatalf("another socket: %v", err)
	}
	c.Close()
}

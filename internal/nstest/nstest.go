// Package nstest holds helpers for the network integration tests and the
// bench: an isolation guard, throwaway network namespaces standing in for
// containers and WAN hosts, and a TCP echo of the caller's address.
//
// Every helper is for a process run as PID 1 in fresh namespaces (go test
// -exec 'unshare --pid --net --mount --fork --mount-proc', or make bench);
// Isolated skips a test anywhere else, so nothing here can touch the host
// network.
package nstest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/isolated"
)

// Isolated skips t unless the process is root and PID 1 of its own pid
// namespace and its network namespace holds nothing but lo, i.e. it runs
// under unshare and cannot reach the host's network. Tests clean up after
// themselves, so every test of the binary starts from lo alone.
func Isolated(t testing.TB) {
	t.Helper()
	isolated.RequireNet(t)
}

// NS is a network namespace made by the test.
type NS struct {
	Handle netns.NsHandle
	// Path opens the namespace (a /proc/<pid>/fd path), like the
	// /proc/<pid>/ns/net of a container.
	Path string
}

// NewNS creates a network namespace, with only lo (down) in it, closed when
// the test ends (the namespace and its links vanish with the last user).
func NewNS(t testing.TB) NS {
	t.Helper()
	ns, err := MakeNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Handle.Close() })
	return ns
}

// MakeNS creates a network namespace the caller must close.
func MakeNS() (NS, error) {
	var (
		h   netns.NsHandle
		err error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}()
		runtime.LockOSThread()
		orig, gerr := netns.Get()
		if gerr != nil {
			err = gerr
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		h, err = netns.New()
		if serr := netns.Set(orig); serr != nil {
			// Leave the thread locked: it dies with this goroutine.
			err = errors.Join(err, serr)
			return
		}
		runtime.UnlockOSThread()
	}()
	<-done
	if err != nil {
		if h.IsOpen() {
			h.Close()
		}
		return NS{}, fmt.Errorf("new netns: %w", err)
	}
	return NS{Handle: h, Path: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(h))}, nil
}

// Do runs fn on an OS thread switched into ns; sockets fn creates stay in
// ns after it returns. With netns.None() fn runs in the current netns.
func Do(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic in netns: %v\n%s", r, debug.Stack())
			}
		}()
		runtime.LockOSThread()
		orig, gerr := netns.Get()
		if gerr != nil {
			runtime.UnlockOSThread()
			err = gerr
			return
		}
		defer orig.Close()
		if serr := netns.Set(ns); serr != nil {
			runtime.UnlockOSThread()
			err = serr
			return
		}
		err = fn()
		if serr := netns.Set(orig); serr != nil {
			err = errors.Join(err, serr) // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
	}()
	<-done
	return err
}

// ServeEach serves each connection accepted on ln with handle, in a
// goroutine of its own that closes it after, until ln is closed, which
// happens when the test ends: the accept loop of the tests' backends.
func ServeEach(t testing.TB, ln net.Listener, handle func(c net.Conn)) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// ServeProxy runs p.Serve(ln) for the test and, when the test ends,
// closes p and reports an error Serve returned: the start of the tests'
// links and relays (xconnect.Proxy).
func ServeProxy(t testing.TB, p interface {
	Serve(ln net.Listener) error
	Close() error
}, ln net.Listener) {
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	t.Cleanup(func() {
		p.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// UnixPair is a connected pair of unix stream sockets as *net.UnixConn,
// closed when the test ends.
func UnixPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socket")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	a, b := conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// Echo listens on addr inside ns and answers each connection with the
// remote address it sees, then closes it. It stops when the test ends.
func Echo(t testing.TB, ns netns.NsHandle, addr string) {
	t.Helper()
	var ln net.Listener
	if err := Do(ns, func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatalf("listen %s in netns: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		defer func() {
			// The test may be over: no t to report to, so stderr.
			if r := recover(); r != nil {
				fmt.Fprintf(os.Stderr, "nstest: echo server panicked: %v\n%s", r, debug.Stack())
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
}

// Dial connects from inside ns to addr (an Echo) and returns the source
// address the echo saw.
func Dial(ns netns.NsHandle, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	if err := Do(ns, func() (err error) {
		d := net.Dialer{Timeout: timeout}
		c, err = d.Dial("tcp4", addr)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read echo: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// Links returns the sorted names of the links in the current netns.
func Links(t testing.TB) []string {
	t.Helper()
	ls, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("list links: %v", err)
	}
	var names []string
	for _, l := range ls {
		names = append(names, l.Attrs().Name)
	}
	sort.Strings(names)
	return names
}

// Tables returns `<binary> -S` and `<binary> -t nat -S` output in the
// current netns. Call it only after Isolated.
func Tables(t testing.TB, binary string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{{"-w", "-S"}, {"-w", "-t", "nat", "-S"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", binary, args, err, out)
		}
		b.Write(out)
	}
	return b.String()
}

// Run runs a command in the current netns and fails the test on error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// FailingListener fails every Accept with Err while Failing is set, as
// accept(2) does while the process or the kernel is short of something
// (descriptors, memory, socket buffers, epoll watches), and counts those
// calls; otherwise it accepts from the Listener it wraps.
type FailingListener struct {
	net.Listener
	Err     error
	Failing atomic.Bool
	Calls   atomic.Int64
}

func (l *FailingListener) Accept() (net.Conn, error) {
	if l.Failing.Load() {
		l.Calls.Add(1)
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", l.Err)}
	}
	return l.Listener.Accept()
}

// ClosedByPeer says the other end of c has closed it: a read that does
// not wait finds its end of stream (or a reset).
func ClosedByPeer(t testing.TB, c net.Conn) bool {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var closed bool
	rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		closed = (err == nil && n == 0) || errors.Is(err, unix.ECONNRESET)
	})
	return closed
}

// DialMany opens n connections to addr and holds them until the test
// ends: a peer that opens connections without end and sends nothing.
func DialMany(t testing.TB, network, addr string, n int) []net.Conn {
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.Dial(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	return conns
}

// Refused counts the connections of conns their peer has closed, waiting
// (up to 20 s) until there are at least want: a server refuses what is
// over its cap as it accepts, at its own pace.
func Refused(t testing.TB, conns []net.Conn, want int) int {
	refused := 0
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		refused = 0
		for _, c := range conns {
			if ClosedByPeer(t, c) {
				refused++
			}
		}
		if refused >= want {
			break
		}
	}
	return refused
}

// underLimitEnv marks the run of a test binary that UnderDescriptorLimit
// started.
const underLimitEnv = "PV_TEST_UNDER_DESCRIPTOR_LIMIT"

// UnderDescriptorLimit runs the calling test again in a child copy of the
// test binary whose descriptor limit is limit (soft and hard: the Go
// runtime cannot raise it), as a device's supervisor has the kernel's
// 4096, and reports whether this is that child, which then does the
// test's work. In the parent it fails the test if the child failed, with
// the child's output.
func UnderDescriptorLimit(t *testing.T, limit int) bool {
	t.Helper()
	if os.Getenv(underLimitEnv) != "" {
		return true
	}
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n "$0" && exec "$@"`, fmt.Sprint(limit),
		os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), underLimitEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("under a limit of %d descriptors:\n%s", limit, out)
	if err != nil {
		t.Fatal(err)
	}
	return false
}

// OpenDescriptors counts the process's open descriptors.
func OpenDescriptors(t testing.TB) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// DescriptorsBeyond is how many descriptors the process holds beyond
// baseline and own (the test's own, such as both ends of its
// connections): the median of five looks 20 ms apart, as one refused
// message or connection holds its descriptors for an instant.
func DescriptorsBeyond(t testing.TB, baseline, own int) int {
	t.Helper()
	var n []int
	for range 5 {
		time.Sleep(20 * time.Millisecond)
		n = append(n, OpenDescriptors(t)-baseline-own)
	}
	sort.Ints(n)
	return n[2]
}

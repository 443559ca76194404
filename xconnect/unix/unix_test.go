package unix

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/nstest"
	"github.com/pantavisor/pv/xconnect"
)

// answer serves a provider's connection: after the consumer's end of
// stream, it answers with what it got, the bytes and, for each
// descriptor, what reading it gives; then it sends a descriptor of its
// own back.
func answer(t *testing.T, c *net.UnixConn) {
	got, fds, _ := readWithFds(c)
	reply := "got " + string(got) + " fds [" + strings.Join(fds, ",") + "]"
	fd := memfd(t, "from-provider")
	c.WriteMsgUnix([]byte(reply), unix.UnixRights(fd), nil)
	unix.Close(fd)
}

// readWithFds reads c to its end: the bytes, and what reading each
// descriptor that came with them gives. The error is nil at the end of
// the stream.
func readWithFds(c *net.UnixConn) (got []byte, fds []string, err error) {
	buf, oob := make([]byte, 1024), make([]byte, 1024)
	for {
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		got = append(got, buf[:max(n, 0)]...)
		for _, fd := range rights(oob[:max(oobn, 0)]) {
			b := make([]byte, 64)
			k, _ := unix.Pread(fd, b, 0)
			fds = append(fds, string(b[:k]))
			unix.Close(fd)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return got, fds, err
		}
		if err != nil || (n == 0 && oobn == 0) {
			return got, fds, nil
		}
	}
}

func memfd(t *testing.T, content string) int {
	fd, err := unix.MemfdCreate("t", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	unix.Write(fd, []byte(content))
	return fd
}

// link starts a provider that answers each connection (answer) and a
// link in front of it.
func link(t *testing.T) (string, *xconnect.Stats, xconnect.Proxy) {
	return linkWith(t, nil, func(c *net.UnixConn) { answer(t, c) })
}

// The consumer sends bytes and a descriptor, half-closes, and still reads
// the provider's answer, which carries a descriptor back.
func TestHalfCloseAndDescriptorsBothWays(t *testing.T) {
	cons, st, _ := link(t)
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: cons, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fd := memfd(t, "fd-content")
	if _, _, err := c.WriteMsgUnix([]byte("hello"), unix.UnixRights(fd), nil); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	c.Write([]byte(" world"))
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	got, back, err := readWithFds(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "got hello world fds [fd-content]" {
		t.Errorf("provider answered %q", got)
	}
	if len(back) != 1 || back[0] != "from-provider" {
		t.Errorf("descriptors back: %q", back)
	}
	if s := st.Snapshot(); s.Connections != 1 || s.BytesUp != 11 || s.BytesDown != int64(len(got)) || s.Errors != 0 {
		t.Errorf("stats %+v", s)
	}
}

// A message and the end of stream that came with it, in one wake-up of
// the link, are both passed on: the wait after a short read ends by the
// hang-up watcher (a link waiting for ever here would hang the provider,
// which answers only after the end).
func TestMessageAndEndInOneWakeUp(t *testing.T) {
	cons, st, _ := link(t)
	for i := range 30 {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: cons, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("ping"))
		c.CloseWrite()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _, err := readWithFds(c)
		c.Close()
		if err != nil || string(got) != "got ping fds []" {
			t.Fatalf("connection %d: %q, %v", i, got, err)
		}
	}
	if s := st.Snapshot(); s.Errors != 0 {
		t.Errorf("stats %+v", s)
	}
}

// The proxy keeps none of the descriptors it passed on.
func TestNoDescriptorLeak(t *testing.T) {
	cons, _, _ := link(t)
	before := nstest.OpenDescriptors(t)
	for i := 0; i < 20; i++ {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: cons, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		fd := memfd(t, "x")
		c.WriteMsgUnix([]byte("m"), unix.UnixRights(fd, fd, fd), nil)
		unix.Close(fd)
		c.CloseWrite()
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf, oob := make([]byte, 256), make([]byte, 256)
		for {
			n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
			closeAll(rights(oob[:oobn]))
			if err != nil || (n == 0 && oobn == 0) {
				break
			}
		}
		c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	if after := nstest.OpenDescriptors(t); after > before+2 {
		t.Errorf("%d descriptors open after 20 connections, %d before", after, before)
	}
}

// A provider that cannot be reached closes the consumer's connection and
// counts an error; Close ends connections under way and every goroutine.
func TestUnreachableProviderAndClose(t *testing.T) {
	base := runtime.NumGoroutine()
	dir := t.TempDir()
	st := &xconnect.Stats{}
	p := New(xconnect.Config{Stats: st, Dial: func(ctx context.Context) (net.Conn, error) {
		return nil, errors.New("no provider")
	}})
	ln, err := net.Listen("unix", filepath.Join(dir, "c.sock"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	c, err := net.Dial("unix", filepath.Join(dir, "c.sock"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("read from a link without provider: %d %v", n, err)
	}
	c.Close()
	if st.Errors.Load() != 1 {
		t.Errorf("errors %d", st.Errors.Load())
	}

	// A connection under way is ended by Close.
	cons, _, q := link(t)
	c2, err := net.Dial("unix", cons)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Write([]byte("pending"))
	time.Sleep(50 * time.Millisecond)
	q.Close()
	c2.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadAll(c2); err != nil {
		t.Fatalf("after Close: %v", err)
	}
	p.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > base+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+2 {
		t.Errorf("%d goroutines after Close, %d before", n, base)
	}
}

// A consumer that retries against a provider that is gone gets each
// connection closed and counted; the warning is logged once, not once per
// try.
func TestUnreachableProviderIsWarnedOnce(t *testing.T) {
	var logged lockedBuffer
	st := &xconnect.Stats{}
	p := New(xconnect.Config{Link: xconnect.Link{Consumer: "c", Name: "s", Type: "unix"}, Stats: st,
		Log:  slog.New(slog.NewTextHandler(&logged, nil)),
		Dial: func(context.Context) (net.Conn, error) { return nil, errors.New("no provider") }})
	cons := filepath.Join(t.TempDir(), "consumer.sock")
	cl, err := net.Listen("unix", cons)
	if err != nil {
		t.Fatal(err)
	}
	nstest.ServeProxy(t, p, cl)
	const tries = 5
	for range tries {
		c, err := net.Dial("unix", cons)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("read from a link without its provider: %d, %v; want the end of stream", n, err)
		}
		c.Close()
	}
	out := logged.String()
	if n := strings.Count(out, "provider not reachable"); n != 1 || st.Errors.Load() != tries {
		t.Errorf("%d warnings and %d errors counted for %d failed tries, want 1 and %d:\n%s", n, st.Errors.Load(), tries, tries, out)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

package xconnect

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// countingListener counts its Accept calls.
type countingListener struct {
	net.Listener
	calls atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	l.calls.Add(1)
	return l.Listener.Accept()
}

// countingHandler counts the records logged at warning level or above.
type countingHandler struct{ n *atomic.Int64 }

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// TestAcceptWithNoDescriptors fills the process's descriptor table while
// a consumer's connection waits to be accepted: the accept loop neither
// spins (it pauses between tries) nor floods the log (a line per try,
// ten a second per link, while every descriptor is taken), nor stops:
// once descriptors are free again it serves the connection.
func TestAcceptWithNoDescriptors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	raw, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: raw}
	var warnings atomic.Int64
	cs := NewConns(slog.New(countingHandler{&warnings}))
	served := make(chan struct{})
	go cs.Serve(ln, func(c net.Conn) {
		io.WriteString(c, "ok")
		close(served)
	})
	defer cs.Close()

	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = 512
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
	var fillers []int
	release := func() {
		for _, fd := range fillers {
			syscall.Close(fd)
		}
		fillers = nil
	}
	defer release()
	for {
		fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		fillers = append(fillers, fd)
	}
	// One descriptor for the consumer's end; the loop's accept has none.
	syscall.Close(fillers[len(fillers)-1])
	fillers = fillers[:len(fillers)-1]
	before := ln.calls.Load()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	calls, warned := ln.calls.Load()-before, warnings.Load()
	release()
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
	defer c.Close()
	if calls > 50 {
		t.Errorf("%d accepts in a second without descriptors: spinning", calls)
	}
	if calls < 2 {
		t.Errorf("%d accepts in a second without descriptors: the loop did not try", calls)
	}
	if warned > 2 {
		t.Errorf("%d warnings logged in a second without descriptors", warned)
	}
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("not served once descriptors were free again")
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); string(b) != "ok" {
		t.Fatalf("read %q, %v", b, err)
	}
}

package xconnect

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A raw write to a socket whose peer has gone fails with EPIPE and raises
// no SIGPIPE: a process that asks for SIGPIPE (signal.Notify) must not get
// one for every link or ingress connection that ends under a write.
func TestRawWriteToAGonePeerRaisesNoSIGPIPE(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	unix.Close(fds[1])

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGPIPE)
	defer signal.Stop(sigs)

	if _, err := RawWrite(fds[0], []byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("RawWrite to a gone peer: %v, want EPIPE", err)
	}
	if _, err := RawWriteNow(fds[0], []byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("RawWriteNow to a gone peer: %v, want EPIPE", err)
	}
	select {
	case s := <-sigs:
		t.Fatalf("got %v", s)
	case <-time.After(200 * time.Millisecond):
	}
}

// RawRead reads what a socket holds, says EAGAIN when it holds nothing,
// and 0 at the peer's end of stream.
func TestRawReadOfASocket(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	p := make([]byte, 16)
	if _, err := RawRead(fds[0], p); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("read of an empty socket: %v, want EAGAIN", err)
	}
	if n, err := RawWriteNow(fds[1], []byte("hello")); n != 5 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	unix.Close(fds[1])
	if n, err := RawRead(fds[0], p); n != 5 || err != nil || string(p[:n]) != "hello" {
		t.Fatalf("read: %q, %v", p[:max(n, 0)], err)
	}
	if n, err := RawRead(fds[0], p); n != 0 || err != nil {
		t.Fatalf("read at the end: %d, %v, want 0, nil", n, err)
	}
}

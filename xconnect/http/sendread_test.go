package http

import (
	"bytes"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A request that does not fit the socket at once is written whole before
// its answer is read.
func TestSendReadWritesWhatTheSocketCannotTake(t *testing.T) {
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := fileConn(t, p[0]), fileConn(t, p[1])
	req := bytes.Repeat([]byte("x"), 8<<20) // more than a unix socket's buffer
	go func() {
		if n, _ := io.CopyN(io.Discard, theirs, int64(len(req))); n == int64(len(req)) {
			io.WriteString(theirs, "answer")
		}
	}()
	sr := newSendRead(ours)
	if !sr.send(req) {
		t.Fatal("no raw access to a unix connection")
	}
	ours.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(io.LimitReader(sr, 6))
	if err != nil || string(got) != "answer" {
		t.Fatalf("read %q: %v", got, err)
	}
}

func fileConn(t *testing.T, fd int) net.Conn {
	f := os.NewFile(uintptr(fd), "socket")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestDialWaitsForBacklogRoom: with the socket's listen backlog full, a
// connect fails with EAGAIN; dialSocket retries until the server accepts
// again. Before the fix pvcontrol failed at once ("connect: resource
// temporarily unavailable") while a container burst connections.
func TestDialWaitsForBacklogRoom(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Fill the backlog: nobody accepts yet.
	var queued []net.Conn
	defer func() {
		for _, c := range queued {
			c.Close()
		}
	}()
	for {
		c, err := net.Dial("unix", sock)
		if errors.Is(err, syscall.EAGAIN) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if queued = append(queued, c); len(queued) > 100 {
			t.Skip("the backlog never filled")
		}
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	c, err := dialSocket(context.Background(), &net.Dialer{}, sock)
	if err != nil {
		t.Fatalf("dial with the backlog full for 300 ms: %v", err)
	}
	c.Close()
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("connected after %v, before the backlog had room", took)
	}
}

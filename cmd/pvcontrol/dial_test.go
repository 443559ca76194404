package main

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDialWaitsForBacklogRoom: with the socket's listen backlog full, a
// non-blocking connect fails with EAGAIN; dialSocket waits until the
// server accepts again. Before the fix pvcontrol failed at once
// ("connect: resource temporarily unavailable") while a container burst
// connections. Past its deadline it gives up, saying why.
func TestDialWaitsForBacklogRoom(t *testing.T) {
	sock, l, release := fullBacklog(t)
	defer release()
	start := time.Now()
	if _, err := dialSocket(sock, start.Add(200*time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "backlog stayed full") {
		t.Fatalf("dial with the backlog full past the deadline: %v", err)
	}
	if took := time.Since(start); took < 150*time.Millisecond || took > 2*time.Second {
		t.Errorf("gave up after %v, deadline 200ms", took)
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
	start = time.Now()
	c, err := dialSocket(sock, time.Now().Add(10*time.Second))
	if err != nil {
		t.Fatalf("dial with the backlog full for 300 ms: %v", err)
	}
	c.Close()
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("connected after %v, before the backlog had room", took)
	}
}

// TestReadTimesOut: a server that accepts and never answers costs the
// deadline, not for ever.
func TestReadTimesOut(t *testing.T) {
	sock, l := listenTemp(t)
	go func() {
		if c, err := l.Accept(); err == nil {
			defer c.Close()
			time.Sleep(5 * time.Second)
		}
	}()
	start := time.Now()
	_, err := newClient(sock, false, io.Discard).send("GET", "/containers", "", nil, 0, 300*time.Millisecond, nil)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("no answer for 300 ms: %v, want a timeout", err)
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 3*time.Second {
		t.Errorf("gave up after %v, timeout 300ms", took)
	}
}

// fullBacklog is a listening socket nobody accepts on, its backlog full;
// release closes what it made.
func fullBacklog(t *testing.T) (string, net.Listener, func()) {
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
	// Fill the backlog: nobody accepts yet.
	var queued []net.Conn
	release := func() {
		l.Close()
		for _, c := range queued {
			c.Close()
		}
	}
	for {
		c, err := net.Dial("unix", sock)
		if errors.Is(err, syscall.EAGAIN) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if queued = append(queued, c); len(queued) > 100 {
			release()
			t.Skip("the backlog never filled")
		}
	}
	return sock, l, release
}

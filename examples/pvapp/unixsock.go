package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// serveUnix is `pvapp serve-unix PATH`: for each connection it reads until
// the client's end of stream, then answers with what it got — the bytes,
// and the content of any file descriptor that came with them — and closes.
// Answering only after EOF shows a half-close got through; reading a
// received descriptor shows it arrived usable.
func serveUnix(path string) { serveEachUnix(path, "serving", answer) }

// serveEachUnix listens at path, says so ("pvapp: <doing> unix PATH"),
// serves each connection with handle on a goroutine of its own, and exits
// at SIGTERM.
func serveEachUnix(path, doing string, handle func(c *net.UnixConn)) {
	os.Remove(path)
	if err := os.MkdirAll(dirOf(path), 0o755); err != nil {
		fail(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		fail(err)
	}
	fmt.Println("pvapp:", doing, "unix", path)
	go func() {
		waitForTerm()
		ln.Close()
		os.Exit(0)
	}()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			fail(err)
		}
		go handle(c)
	}
}

func answer(c *net.UnixConn) {
	defer c.Close()
	var data []byte
	var fds []string
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*16))
	for {
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		data = append(data, buf[:n]...)
		if oobn > 0 {
			fds = append(fds, readFds(oob[:oobn])...)
		}
		if err != nil || (n == 0 && oobn == 0) {
			break
		}
	}
	reply := "echo: " + string(data)
	if len(fds) > 0 {
		reply += " fd: " + strings.Join(fds, ",")
	}
	c.Write([]byte(reply))
}

// readFds reads each descriptor of an SCM_RIGHTS message from its start.
func readFds(oob []byte) []string {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return []string{"bad control message: " + err.Error()}
	}
	var out []string
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			b := make([]byte, 64)
			n, err := unix.Pread(fd, b, 0)
			if err != nil {
				out = append(out, "unreadable: "+err.Error())
			} else {
				out = append(out, string(b[:n]))
			}
			unix.Close(fd)
		}
	}
	return out
}

// trickleUnix is `pvapp trickle-unix PATH`: to each connection it writes
// 4 KiB a millisecond until a write fails, reading nothing. Small and
// spaced writes are what a relay reads whole, one at a time.
func trickleUnix(path string) {
	serveEachUnix(path, "trickling on", func(c *net.UnixConn) {
		defer c.Close()
		chunk := make([]byte, 4<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// holdUnix is `pvapp hold-unix PATH`: it connects to PATH once it is
// there, sends one byte, and then holds the connection without reading
// until SIGTERM.
func holdUnix(path string) {
	c, err := dialWhenThere(path)
	if err != nil {
		fail(err)
	}
	defer c.Close()
	c.Write([]byte{0})
	fmt.Println("pvapp: holding", path)
	waitForTerm()
}

// dialWhenThere connects to the socket at path once it appears (10 s at
// most), saying when it did.
func dialWhenThere(path string) (*net.UnixConn, error) {
	start := time.Now()
	for {
		fi, err := os.Stat(path)
		if err == nil && fi.Mode()&os.ModeSocket != 0 {
			break
		}
		if time.Since(start) > 10*time.Second {
			return nil, fmt.Errorf("%s did not appear", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("pvapp: %s there after %d ms\n", path, time.Since(start).Milliseconds())
	return net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
}

// dialUnix is `pvapp dial-unix [-fd] PATH MSG`: it waits for PATH to
// appear (up to 10 s, and prints how long it waited), sends MSG — with
// -fd, together with a memfd holding "fd-content" — half-closes, and
// prints the answer. Exit 1 when it cannot.
func dialUnix(args []string) {
	withFd := len(args) > 0 && args[0] == "-fd"
	if withFd {
		args = args[1:]
	}
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: pvapp dial-unix [-fd] PATH MSG")
		os.Exit(2)
	}
	path, msg := args[0], args[1]
	c, err := dialWhenThere(path)
	if err != nil {
		fail(err)
	}
	defer c.Close()
	var oob []byte
	if withFd {
		fd, err := unix.MemfdCreate("pvapp", unix.MFD_CLOEXEC)
		if err != nil {
			fail(err)
		}
		if _, err := unix.Write(fd, []byte("fd-content")); err != nil {
			fail(err)
		}
		oob = unix.UnixRights(fd)
		defer unix.Close(fd)
	}
	if _, _, err := c.WriteMsgUnix([]byte(msg), oob, nil); err != nil {
		fail(err)
	}
	if err := c.CloseWrite(); err != nil {
		fail(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		fail(err)
	}
	fmt.Printf("pvapp: reply %q\n", reply)
	if len(reply) == 0 {
		os.Exit(1)
	}
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i > 0 {
		return path[:i]
	}
	return "/"
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pvapp:", err)
	os.Exit(1)
}

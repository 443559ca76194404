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
func serveUnix(path string) {
	os.Remove(path)
	if err := os.MkdirAll(dirOf(path), 0o755); err != nil {
		fail(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		fail(err)
	}
	fmt.Println("pvapp: serving unix", path)
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
		go answer(c)
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
	start := time.Now()
	for {
		fi, err := os.Stat(path)
		if err == nil && fi.Mode()&os.ModeSocket != 0 {
			break
		}
		if time.Since(start) > 10*time.Second {
			fail(fmt.Errorf("%s did not appear", path))
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("pvapp: %s there after %d ms\n", path, time.Since(start).Milliseconds())
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
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

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// escapeCgroups does what a container that keeps the host cgroup
// namespace can: mount every hierarchy it is in and move itself to each
// root. It returns the cgroup file as it then reads, or why it could not.
func escapeCgroups() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		dir := filepath.Join("/run/pvcg", f[0])
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		fstype, opts := "cgroup", f[1]
		if f[0] == "0" && f[1] == "" {
			fstype, opts = "cgroup2", ""
		}
		if err := syscall.Mount("cgroup", dir, fstype, 0, opts); err != nil {
			return "", fmt.Errorf("mount %s %q: %w", fstype, opts, err)
		}
		// "0" is the writer: the whole process moves.
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("0"), 0o644); err != nil {
			return "", fmt.Errorf("move to the root of %s: %w", line, err)
		}
	}
	b, err = os.ReadFile("/proc/self/cgroup")
	return strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", " "), err
}

// orphanRequest has a child process connect to pv-ctrl and send the
// request, hand the connection over (SCM_RIGHTS) and exit; the answer is
// read here once the child is gone, so the peer the server sees has
// exited. It prints "ORPHAN METHOD PATH STATUS BODY".
func orphanRequest(method, path string) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Println("ORPHAN", method, path, "error", err)
		return
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
	defer ours.Close()
	cmd := exec.Command("/proc/self/exe", "orphan-child", method, path)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Println("ORPHAN", method, path, "error", err)
		return
	}
	theirs.Close()
	conn, err := recvConn(ours)
	if werr := cmd.Wait(); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		fmt.Println("ORPHAN", method, path, "error", err)
		return
	}
	defer conn.Close()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		fmt.Println("ORPHAN", method, path, "error", err)
		return
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	fmt.Println("ORPHAN", method, path, resp.StatusCode, strings.ReplaceAll(body.String(), "\n", " "))
}

// orphanChild is the child of orphanRequest: fd 3 is the socket pair.
func orphanChild(method, path string) {
	c, err := net.Dial("unix", ctrlSocket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pvapp: orphan child:", err)
		os.Exit(1)
	}
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", method, path)
	f, err := c.(*net.UnixConn).File()
	if err != nil {
		os.Exit(1)
	}
	rights := syscall.UnixRights(int(f.Fd()))
	if err := syscall.Sendmsg(3, []byte{0}, rights, nil, 0); err != nil {
		fmt.Fprintln(os.Stderr, "pvapp: orphan child: send fd:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func recvConn(f *os.File) (net.Conn, error) {
	buf, oob := make([]byte, 1), make([]byte, syscall.CmsgSpace(4))
	_, oobn, _, _, err := syscall.Recvmsg(int(f.Fd()), buf, oob, 0)
	if err != nil {
		return nil, fmt.Errorf("receive connection: %w", err)
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receive connection: %d messages: %v", len(msgs), err)
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("receive connection: %v", err)
	}
	cf := os.NewFile(uintptr(fds[0]), "pv-ctrl")
	defer cf.Close()
	return net.FileConn(cf)
}

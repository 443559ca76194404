package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// The misbehaving clients of the reliability suite's abuse case: each runs
// until the container is stopped and prints, once a second, what it got,
// so the test can tell it really was abusing the socket.

// ctrlHog is `pvapp ctrl-hog`: it opens connections to pv-ctrl as fast as
// it can and never closes one, not even those the server has closed, so
// its descriptors only grow until its limit (raised to the hard one first:
// a real leak would not stop at 1024). At that limit it goes on trying.
func ctrlHog() {
	exitOnTerm()
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	var open, failed atomic.Int64
	go report(func() string {
		return fmt.Sprintf("pvapp: hog open %d failed %d", open.Load(), failed.Load())
	})
	var held []net.Conn
	for {
		c, err := net.Dial("unix", ctrlSocket)
		if err != nil {
			// EMFILE, or the listen backlog full: the server is
			// behind, try again shortly.
			failed.Add(1)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		held = append(held, c)
		open.Add(1)
	}
}

// ctrlHold is `pvapp ctrl-hold N LENGTH PATH`: it keeps N connections, each
// having sent a POST PATH head announcing LENGTH body bytes and none of
// them; when the server ends one, it opens another. It counts the
// connections answered and those closed without an answer.
func ctrlHold(args []string) {
	if len(args) != 3 {
		os.Exit(2)
	}
	n, err1 := strconv.Atoi(args[0])
	length, err2 := strconv.Atoi(args[1])
	if err1 != nil || err2 != nil || n <= 0 {
		os.Exit(2)
	}
	exitOnTerm()
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", args[2], length)
	var sent, answered, closed, failed atomic.Int64
	go report(func() string {
		return fmt.Sprintf("pvapp: hold sent %d answered %d closed %d failed %d", sent.Load(), answered.Load(), closed.Load(), failed.Load())
	})
	slots := make(chan struct{}, n)
	for {
		slots <- struct{}{}
		go func() {
			defer func() { <-slots }()
			c, err := net.Dial("unix", ctrlSocket)
			if err != nil {
				failed.Add(1)
				time.Sleep(10 * time.Millisecond)
				return
			}
			defer c.Close()
			if _, err := c.Write([]byte(head)); err != nil {
				failed.Add(1)
				return
			}
			sent.Add(1)
			// Hold: the head promised a body that never comes. The
			// server's answer (or its close) ends the wait.
			if line, _ := bufio.NewReader(c).ReadString('\n'); strings.HasPrefix(line, "HTTP/") {
				answered.Add(1)
			} else {
				closed.Add(1)
			}
		}()
	}
}

// flood is `pvapp flood`: it prints numbered lines to its console without
// end, as fast as the console takes them.
func flood() {
	exitOnTerm()
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	pad := strings.Repeat("x", 100)
	for i := 0; ; i++ {
		fmt.Fprintf(w, "flood %d %s\n", i, pad)
	}
}

// report prints what line says once a second, on stderr (which the
// container's console log holds too), until the process ends.
func report(line func() string) {
	for range time.Tick(time.Second) {
		fmt.Fprintln(os.Stderr, line())
	}
}

// exitOnTerm ends the process at SIGTERM: as a container's init it would
// ignore it otherwise, and every stop would wait for the SIGKILL.
func exitOnTerm() {
	go func() {
		waitForTerm()
		os.Exit(0)
	}()
}

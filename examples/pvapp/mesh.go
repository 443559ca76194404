package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"
)

// webUnix is `pvapp web-unix PATH`: an HTTP server on a unix socket that
// answers every request with the identity headers it got and the number of
// the connection it came on, so a test sees what a proxy in between sent,
// request by request.
func webUnix(path string) {
	os.Remove(path)
	if err := os.MkdirAll(dirOf(path), 0o755); err != nil {
		fail(err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		fail(err)
	}
	var conns atomic.Int64
	type connKey struct{}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, conns.Add(1))
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "conn=%d client=%q role=%q\n", r.Context().Value(connKey{}),
				r.Header.Values("X-PV-Client"), r.Header.Values("X-PV-Role"))
		}),
	}
	go func() {
		waitForTerm()
		srv.Close()
	}()
	fmt.Println("pvapp: serving http on unix", path)
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fail(err)
	}
}

// getUnix is `pvapp get-unix PATH N`: N GET requests on one keep-alive
// connection to the HTTP server at unix socket PATH, each with a forged
// X-PV-Client header; prints each answer.
func getUnix(path string, n int) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 1,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest("GET", "http://svc/", nil)
		req.Header.Set("X-PV-Client", "forged")
		resp, err := c.Do(req)
		if err != nil {
			fail(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("pvapp: http %d %s", resp.StatusCode, b)
	}
}

// dbusServe is `pvapp dbus-serve ADDRESS NAME`: it owns NAME on the bus
// at ADDRESS and answers org.pantavisor.Test.Ping on /org/pantavisor/Test
// with "pong"; it retries the connection until the bus is up.
func dbusServe(addr, name string) {
	var conn *dbus.Conn
	var err error
	for i := 0; i < 100; i++ {
		if conn, err = dbus.Connect(addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		fail(err)
	}
	if err := conn.Export(pinger{}, "/org/pantavisor/Test", "org.pantavisor.Test"); err != nil {
		fail(err)
	}
	if r, err := conn.RequestName(name, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		fail(fmt.Errorf("own %s: %v (%d)", name, err, r))
	}
	fmt.Println("pvapp: serving dbus", name)
	waitForTerm()
}

type pinger struct{}

func (pinger) Ping() (string, *dbus.Error) { return "pong", nil }

// dbusCall is `pvapp dbus-call ADDRESS NAME`: it calls Ping on NAME and
// prints the answer or the bus's error; exit 1 on an error.
func dbusCall(addr, name string) {
	conn, err := dbus.Connect(addr)
	if err != nil {
		fmt.Println("pvapp: dbus connect:", err)
		os.Exit(1)
	}
	defer conn.Close()
	var s string
	if err := conn.Object(name, "/org/pantavisor/Test").Call("org.pantavisor.Test.Ping", 0).Store(&s); err != nil {
		fmt.Println("pvapp: dbus call:", err)
		os.Exit(1)
	}
	fmt.Println("pvapp: dbus reply", s)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		fail(err)
	}
	return n
}

func meshCommand(cmd string, args []string) {
	need := map[string]int{"web-unix": 1, "get-unix": 2, "dbus-serve": 2, "dbus-call": 2, "forward": 2}[cmd]
	if len(args) != need {
		fmt.Fprintln(os.Stderr, "pvapp: wrong arguments for", cmd)
		os.Exit(2)
	}
	switch cmd {
	case "web-unix":
		webUnix(args[0])
	case "get-unix":
		getUnix(args[0], atoi(args[1]))
	case "dbus-serve":
		dbusServe(args[0], args[1])
	case "dbus-call":
		dbusCall(args[0], args[1])
	case "forward":
		forward(args[0], args[1])
	}
}

// forward is `pvapp forward LISTEN TARGET`: a TCP relay, as a reverse
// proxy container would run one in front of its pool.
func forward(listen, target string) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fail(err)
	}
	fmt.Println("pvapp: forwarding", listen, "to", target)
	for {
		c, err := ln.Accept()
		if err != nil {
			fail(err)
		}
		go func() {
			defer c.Close()
			b, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				return
			}
			defer b.Close()
			go func() { io.Copy(b, c); b.(*net.TCPConn).CloseWrite() }()
			io.Copy(c, b)
		}()
	}
}

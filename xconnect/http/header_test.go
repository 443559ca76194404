package http

import (
	"bufio"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestHugeHeadRefused: a request head beyond MaxHeaderBytes is refused
// with 431, never read whole. net/http's own default is 1 MiB per head:
// held by every one of a listener's thousand connections at once (a
// client sending its head slowly holds it for the header timeout), a
// gigabyte of the supervisor's memory from anyone on the network.
func TestHugeHeadRefused(t *testing.T) {
	base := serve(t, Options{},
		Route{Prefix: "/", Dial: backend(t, func(w nethttp.ResponseWriter, r *nethttp.Request) { fmt.Fprint(w, "ok") })})
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
		for range 32 { // 512 KiB of fields
			io.WriteString(c, "X-Big: "+strings.Repeat("a", 16<<10)+"\r\n")
		}
		io.WriteString(c, "\r\n")
	}()
	res, err := nethttp.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != nethttp.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 512 KiB head: %s, want 431", res.Status)
	}
	waitLingering(t)
}

// waitLingering waits for net/http's connection that lingers after a
// refusal (a half-close, then 500 ms before the close, so that the
// client reads the answer rather than a reset) to be closed: the
// package's leak check would take it for a leak. Its goroutine is the
// test's only one serving a net/http connection.
func waitLingering(t *testing.T) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		if !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "net/http.(*conn).serve") {
			return
		}
	}
	t.Error("a refused connection still lingers")
}

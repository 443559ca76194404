package http

import (
	"bufio"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/xconnect"
)

// TestHugeAnswerHeadRefused: a backend whose answer's head does not end
// (a provider container, hostile or broken) gets its connection closed
// once the head passes maxRespHead, and the client a 502, on net/http's
// path too (an escaped path takes it). Read whole, the head grew the
// supervisor's memory as fast as the backend could write, for the whole
// header timeout.
func TestHugeAnswerHeadRefused(t *testing.T) {
	const endless = 64 << 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	written := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			written <- 0
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := nethttp.ReadRequest(br); err != nil {
			written <- 0
			return
		}
		c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		n, _ := io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		total := int64(n)
		line := "X-A: " + strings.Repeat("a", 16<<10) + "\r\n"
		for total < endless {
			n, err := io.WriteString(c, line)
			total += int64(n)
			if err != nil {
				break
			}
		}
		io.WriteString(c, "Content-Length: 2\r\n\r\nok")
		written <- total
	}()
	base := serve(t, Options{}, Route{Prefix: "/", Dial: xconnect.TCPDialer(ln.Addr().String())})
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "GET /a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n")
	res, err := nethttp.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	n := <-written
	if n >= endless {
		t.Fatalf("the proxy took %d MiB of an answer's head (%s)", n>>20, res.Status)
	}
	if res.StatusCode != nethttp.StatusBadGateway {
		t.Fatalf("an endless answer head: %s, want 502", res.Status)
	}
}

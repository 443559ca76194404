package rest

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHugeAnswerHeadRefused: a provider whose answer's head runs to
// megabytes gets a 502 for it, the head not read whole: net/http's
// Transport takes up to 10 MiB per head by default, held for each of the
// link's thousand connections at once, ten gigabytes of the supervisor's
// memory at a provider's will.
func TestHugeAnswerHeadRefused(t *testing.T) {
	const head = 4 << 20
	prov := filepath.Join(t.TempDir(), "prov.sock")
	ln, err := net.Listen("unix", prov)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	written := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			written <- 0
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			written <- 0
			return
		}
		c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		total, _ := io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := "X-A: " + strings.Repeat("a", 16<<10) + "\r\n"
		for total < head {
			n, err := io.WriteString(c, line)
			total += n
			if err != nil {
				break
			}
		}
		io.WriteString(c, "Content-Length: 2\r\n\r\nok")
		written <- total
	}()
	cons, _ := startLink(t, prov)
	c, err := net.Dial("unix", cons)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: api\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway {
		t.Fatalf("a %d MiB answer head: %s, want 502 (provider wrote %d bytes)", head>>20, res.Status, <-written)
	}
}

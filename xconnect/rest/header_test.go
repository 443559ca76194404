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

// TestHugeHeadRefused: a request head beyond the rest link's bound is
// refused with 431, never read whole. net/http's default, 1 MiB per head,
// held by each of a link's thousand connections at once (a consumer
// sending its heads slowly holds them for the header timeout), was a
// gigabyte of the supervisor's memory.
func TestHugeHeadRefused(t *testing.T) {
	prov := filepath.Join(t.TempDir(), "prov.sock")
	startProvider(t, prov)
	cons, _ := startLink(t, prov)
	c, err := net.Dial("unix", cons)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		io.WriteString(c, "GET /a HTTP/1.1\r\nHost: api\r\n")
		for range 32 { // 512 KiB of fields
			io.WriteString(c, "X-Big: "+strings.Repeat("a", 16<<10)+"\r\n")
		}
		io.WriteString(c, "\r\n")
	}()
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 512 KiB head: %s, want 431", res.Status)
	}
}

package tcp

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/nstest"
)

// pipeFDs counts the process's open pipes.
func pipeFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Bulk both ways at once, sizes no multiple of anything the relay moves
// at a time, a consumer slow at first (the relay waits for it to take
// more while holding bytes): every byte arrives, in order, each end of
// stream is passed on as a half-close, and the counters are exact.
func TestSpliceBulkBothWaysExact(t *testing.T) {
	up := randomBytes(9<<20+12345, 1)
	down := randomBytes(5<<20+777, 2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	gotUp := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			gotUp <- nil
			return
		}
		defer c.Close()
		go func() {
			c.Write(down)
			c.(*net.TCPConn).CloseWrite()
		}()
		time.Sleep(200 * time.Millisecond) // slow at first: the relay's writes wait
		b, _ := io.ReadAll(c)
		gotUp <- b
	}()
	addr, st := start(t, ln.Addr().String(), Options{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		c.Write(up)
		c.(*net.TCPConn).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	time.Sleep(100 * time.Millisecond) // and this consumer too
	gotDown, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(gotDown) != sha256.Sum256(down) {
		t.Errorf("down: %d bytes, not the %d sent", len(gotDown), len(down))
	}
	if b := <-gotUp; sha256.Sum256(b) != sha256.Sum256(up) {
		t.Errorf("up: %d bytes, not the %d sent", len(b), len(up))
	}
	deadline := time.Now().Add(5 * time.Second)
	for st.Active.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s := st.Snapshot(); s.BytesUp != int64(len(up)) || s.BytesDown != int64(len(down)) || s.Errors != 0 {
		t.Errorf("stats %+v", s)
	}
}

// A relayed connection holds a pipe only while bytes flow: after bursts
// both ways, connections left open and idle hold none, and the pipes kept
// for reuse are bounded.
func TestSpliceIdleAfterBurstHoldsNoPipe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A backend that answers every read with as many bytes, and keeps
	// its connection open; through a buffer of its own (io.Copy between
	// sockets would splice, through a pipe held all along).
	nstest.ServeEach(t, ln, func(c net.Conn) {
		b := make([]byte, 32<<10)
		for {
			n, err := c.Read(b)
			if n > 0 {
				if _, err := c.Write(b[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	addr, st := start(t, ln.Addr().String(), Options{})
	before := pipeFDs()
	const n = 12
	burst := bytes.Repeat([]byte("z"), 300<<10)
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// The bursts at once, so that several directions hold a pipe at the
	// same time.
	errs := make(chan error, n)
	for _, c := range conns {
		go func() {
			go c.Write(burst)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.ReadFull(c, make([]byte, len(burst)))
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Every byte came back: both directions of every connection are
	// waiting for their source again.
	time.Sleep(100 * time.Millisecond)
	if got := pipeFDs() - before; got > 2*maxFreePipes {
		t.Errorf("%d pipe descriptors for %d idle relayed connections; at most %d kept for reuse", got, n, maxFreePipes)
	}
	pipes.Lock()
	free := len(pipes.free)
	pipes.Unlock()
	if free > maxFreePipes {
		t.Errorf("%d pipes kept for reuse, more than %d", free, maxFreePipes)
	}
	if a := st.Active.Load(); a != n {
		t.Errorf("%d connections relayed, want %d", a, n)
	}
	// Still relaying after idling.
	c := conns[n-1]
	c.Write([]byte("again"))
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "again" {
		t.Fatalf("after idling: %q, %v", b, err)
	}
}

// A pipe given back past the free list's bound is closed, not leaked.
func TestPipeFreeListBound(t *testing.T) {
	before := pipeFDs()
	var ps []*pipe
	for range maxFreePipes + 3 {
		p, err := getPipe()
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		putPipe(p)
	}
	pipes.Lock()
	free := len(pipes.free)
	pipes.Unlock()
	if free > maxFreePipes {
		t.Errorf("%d pipes kept, more than %d", free, maxFreePipes)
	}
	if got := pipeFDs() - before; got > 2*maxFreePipes {
		t.Errorf("%d pipe descriptors left open", got)
	}
}

// A backend behind a unix socket (not spliced by the loop of two TCP
// sockets) is relayed too, end of stream included.
func TestRelayToUnixBackend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		c.Write(append([]byte("echo:"), b...))
	}()
	addr, _ := toUnix(t, path)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := randomBytes(3<<20+5, 3)
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append([]byte("echo:"), payload...)) {
		t.Fatalf("got %d bytes back", len(got))
	}
}

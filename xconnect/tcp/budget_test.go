package tcp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/nstest"
	"github.com/pantavisor/pv/xconnect"
)

// A relay whose backend reads nothing holds, per connection, a pipe of
// bytes it waits to send on besides its two sockets: all relays together
// stay within a quarter of the descriptors (xconnect's budget): those
// refused a pipe copy, those beyond are refused on arrival, and every
// byte of the others arrives. The pipes were not
// counted: an ingress client stalling a backend on many connections took
// half the supervisor's descriptors more than the budget.
func TestRelayHoldsAQuarterOfTheDescriptors(t *testing.T) {
	const limit, conns, size = 1024, 100, 1 << 20
	if !nstest.UnderDescriptorLimit(t, limit) {
		return
	}
	release := make(chan struct{})
	releaseAll := sync.OnceFunc(func() { close(release) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Reads nothing until release, then counts what came.
	nstest.ServeEach(t, ln, func(c net.Conn) {
		<-release
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprint(c, n)
	})
	addr, st := start(t, ln.Addr().String(), Options{})
	c, err := net.Dial("tcp", addr) // the process's own, made at a first connection, in the baseline
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	time.Sleep(50 * time.Millisecond)
	baseline := nstest.OpenDescriptors(t)
	var open []net.Conn
	var wg sync.WaitGroup
	defer func() {
		releaseAll()
		for _, c := range open {
			c.Close()
		}
		wg.Wait()
	}()
	chunk := make([]byte, size)
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Write(chunk)
			c.(*net.TCPConn).CloseWrite()
		}()
	}
	time.Sleep(time.Second) // every relay stalled on its backend
	// Its sockets and the backend's accepted ones are the test's.
	if n := nstest.DescriptorsBeyond(t, baseline, 2*conns); n > limit/4 {
		t.Errorf("the relays hold %d descriptors for %d connections whose backend reads nothing, more than a quarter of %d", n, conns, limit)
	}
	releaseAll()
	// Those the budget refused were closed on arrival, counted as
	// errors; every other got its bytes through, spliced or copied.
	carried := 0
	for i, c := range open {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		got, err := io.ReadAll(c)
		if len(got) == 0 && (err == nil || errors.Is(err, syscall.ECONNRESET)) {
			continue // closed on arrival, with the client's bytes unread
		}
		if n, _ := strconv.Atoi(string(got)); err != nil || n != size {
			t.Fatalf("connection %d: the backend got %q bytes (%v), want %d", i, got, err, size)
		}
		carried++
	}
	if refused := conns - carried; carried < conns/4 || int64(refused) != st.Errors.Load() {
		t.Errorf("%d connections carried, %d refused, %d errors counted", carried, refused, st.Errors.Load())
	}
}

// A relay the budget refuses a pipe copies through a buffer instead:
// every byte arrives, and no pipe is opened.
func TestCopiesWhenTheBudgetHasNoPipe(t *testing.T) {
	addr, _ := start(t, backend(t), Options{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The connection carried (its sockets counted), the free pipes
	// closed, and the rest of the budget taken.
	c.Write([]byte("x"))
	time.Sleep(50 * time.Millisecond)
	pipes.Lock()
	for _, p := range pipes.free {
		p.held = 1 // closed, not kept
		pipes.Unlock()
		putPipe(p)
		pipes.Lock()
	}
	pipes.free = nil
	pipes.Unlock()
	taken := 0
	for xconnect.TakeDescriptors(1) {
		taken++
	}
	defer xconnect.GiveDescriptors(taken)
	pipesBefore := pipeFDs()
	body := bytes.Repeat([]byte("0123456789"), 400<<10)
	go func() {
		c.Write(body)
		c.(*net.TCPConn).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(c)
	if want := append([]byte("echo:x"), body...); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("echo of %d bytes: got %d (%v)", len(want), len(got), err)
	}
	if pipes := pipeFDs(); pipes > pipesBefore {
		t.Errorf("%d pipes open, %d before: a pipe outside the budget", pipes, pipesBefore)
	}
}

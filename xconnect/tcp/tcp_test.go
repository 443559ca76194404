package tcp

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/nstest"
	"github.com/pantavisor/pv/xconnect"
)

// backend answers each connection, after its end of stream, with what it
// got, upper-cased by nothing: an echo after EOF.
func backend(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nstest.ServeEach(t, ln, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		c.Write(append([]byte("echo:"), b...))
	})
	return ln.Addr().String()
}

func start(t *testing.T, to string, opt Options) (string, *xconnect.Stats) {
	st := &xconnect.Stats{}
	p := NewWith(xconnect.Config{Stats: st, Dial: xconnect.TCPDialer(to)}, opt)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nstest.ServeProxy(t, p, ln)
	return ln.Addr().String(), st
}

// toUnix starts a relay from a loopback TCP address, which it returns,
// to the unix socket at path, until the test ends.
func toUnix(t *testing.T, path string) (string, *xconnect.Stats) {
	t.Helper()
	st := &xconnect.Stats{}
	p := NewWith(xconnect.Config{Stats: st, Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}, Options{})
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nstest.ServeProxy(t, p, front)
	return front.Addr().String(), st
}

func TestRelayHalfCloseAndCounts(t *testing.T) {
	addr, st := start(t, backend(t), Options{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := bytes.Repeat([]byte("x"), 1<<20)
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(payload)+5 || string(got[:5]) != "echo:" {
		t.Fatalf("got %d bytes", len(got))
	}
	deadline := time.Now().Add(2 * time.Second)
	for st.Active.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s := st.Snapshot(); s.Connections != 1 || s.BytesUp != int64(len(payload)) || s.BytesDown != int64(len(got)) || s.Active != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestConnectionCap(t *testing.T) {
	// A backend that holds connections open.
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	go func() {
		for {
			c, err := hold.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	addr, st := start(t, hold.Addr().String(), Options{MaxConns: 2})
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	deadline := time.Now().Add(2 * time.Second)
	for st.Active.Load() != 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	third.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the connection over the cap: %v", err)
	}
	if st.Errors.Load() != 1 {
		t.Errorf("refusals counted: %d", st.Errors.Load())
	}
}

func TestIdleTimeout(t *testing.T) {
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	go func() {
		for {
			c, err := hold.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	addr, _ := start(t, hold.Addr().String(), Options{IdleTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	began := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection: %v", err)
	}
	if d := time.Since(began); d < 300*time.Millisecond {
		t.Fatalf("ended after %v, before its idle timeout", d)
	}
}

func TestBackendDown(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	to := dead.Addr().String()
	dead.Close()
	addr, st := start(t, to, Options{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read: %v", err)
	}
	if st.Errors.Load() != 1 {
		t.Errorf("errors %d", st.Errors.Load())
	}
}

// A relay closed before it serves (a link removed while its listener was
// being made) returns from Serve at once and closes the listener, instead
// of accepting on it for ever.
func TestServeAfterClose(t *testing.T) {
	p := NewWith(xconnect.Config{Dial: xconnect.TCPDialer(backend(t))}, Options{})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		ln.Close()
		t.Fatal("Serve after Close still accepting")
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("the listener of a closed relay still takes connections")
	}
}

// Close waits for every connection's goroutine: once it returns, no
// connection is taken or counted any more, even with clients arriving
// while it runs.
func TestCloseUnderLoad(t *testing.T) {
	to := backend(t)
	for range 30 {
		st := &xconnect.Stats{}
		p := NewWith(xconnect.Config{Stats: st, Dial: xconnect.TCPDialer(to)}, Options{})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- p.Serve(ln) }()
		stop := make(chan struct{})
		dialed := make(chan struct{})
		go func() {
			defer close(dialed)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
					c.Close()
				} else {
					return
				}
			}
		}()
		time.Sleep(5 * time.Millisecond)
		p.Close()
		after := st.Snapshot()
		close(stop)
		<-dialed
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		if now := st.Snapshot(); now != after || now.Active != 0 {
			t.Fatalf("after Close returned: %+v, then %+v", after, now)
		}
	}
}

// A consumer that resets its connection (a crashed client) ends the
// relay and the backend's connection, rather than leaving them open until
// the idle timeout when the backend keeps its side open.
func TestResetEndsBoth(t *testing.T) {
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	held := make(chan net.Conn, 1)
	go func() {
		if c, err := hold.Accept(); err == nil {
			held <- c // kept open, silent
		}
	}()
	addr, st := start(t, hold.Addr().String(), Options{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := <-held
	defer b.Close()
	c.(*net.TCPConn).SetLinger(0) // close sends a reset
	c.Close()
	deadline := time.Now().Add(3 * time.Second)
	for st.Active.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := st.Active.Load(); n != 0 {
		t.Fatalf("%d connection still relayed after the consumer's reset", n)
	}
}

// An idle relayed connection holds its two sockets and nothing else: no
// splice pipe waits on it (io.Copy's would, two descriptors per
// direction, for the life of the connection).
func TestIdleConnectionsHoldNoPipes(t *testing.T) {
	addr, st := start(t, backend(t), Options{})
	// A burst first: the pipes of a transfer go back to the free list.
	pipesBefore := pipeFDs()
	const n = 20
	var conns []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(bytes.Repeat([]byte("y"), 64<<10)); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Counted only when a direction ends: wait for every relay instead.
	deadline := time.Now().Add(5 * time.Second)
	for st.Snapshot().Active < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the bursts relayed, the relays idle
	if pipes := pipeFDs(); pipes-pipesBefore > 4 {
		// The free list keeps a few pipes for reuse; one per idle
		// direction (2n) would be a leak of the design.
		t.Errorf("%d pipes open for %d idle relayed connections (%d before)", pipes, n, pipesBefore)
	}
	// Still relaying: half-close and the echo of everything comes back.
	c := conns[0]
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || len(got) != 64<<10+5 {
		t.Fatalf("echo after idling: %d bytes, %v", len(got), err)
	}
}

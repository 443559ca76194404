package unix

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestConnectionCap: a consumer that opens connections without end and
// sends nothing holds at most xconnect.DefaultMaxConns of them (each is
// two of pantavisor's descriptors, and goroutines); those beyond are
// closed on arrival and counted as errors. Held without a cap, they
// would take every descriptor of the supervisor: no container start, no
// control socket, for as long as the consumer kept them.
func TestConnectionCap(t *testing.T) {
	const opened, maxConns = 1200, 1024
	cons, st, _ := linkWith(t, nil, func(c *net.UnixConn) { io.Copy(io.Discard, c) })
	conns := make([]net.Conn, 0, opened)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range opened {
		c, err := net.Dial("unix", cons)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Every connection is either carried or refused, whatever the pace.
	deadline := time.Now().Add(60 * time.Second)
	for st.Connections.Load()+st.Errors.Load() < opened && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s := st.Snapshot()
	if s.Active > maxConns {
		t.Fatalf("%d of %d idle connections held (cap %d): %+v", s.Active, opened, maxConns, s)
	}
	if s.Connections+s.Errors < opened || s.Errors < opened-maxConns {
		t.Fatalf("connections not all carried or refused: %+v", s)
	}
	// The refused ones were closed: they read their end at once.
	refused := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			refused++
		}
	}
	if refused != opened-maxConns {
		t.Errorf("%d connections closed, want %d", refused, opened-maxConns)
	}
}

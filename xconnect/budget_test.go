package xconnect

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

func TestBudgetIsAQuarterOfTheDescriptors(t *testing.T) {
	for descriptors, want := range map[uint64]int64{4096: 1024, 20000: 5000, 100: minBudget, 0: minBudget} {
		if got := newBudget(descriptors).max; got != want {
			t.Errorf("budget for a limit of %d descriptors: %d, want %d", descriptors, got, want)
		}
	}
}

// Two proxies share the process-wide budget: with room for three
// connections (two descriptors each), the fourth is closed on arrival whichever proxy it came
// to, though neither is at its own cap; and one closed makes room again.
func TestProxiesShareTheBudget(t *testing.T) {
	// Put back last, once the proxies below are closed (cleanups run
	// in reverse): their connections are given back to this one.
	orig := connBudget
	t.Cleanup(func() { connBudget = orig })
	connBudget = &budget{max: 3 * connDescriptors}
	dir := t.TempDir()
	started := make(chan struct{}, 8)
	serve := func(name string) string {
		path := filepath.Join(dir, name)
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		s := NewConns(nil)
		go s.Serve(ln, func(c net.Conn) {
			started <- struct{}{}
			io.Copy(io.Discard, c)
		})
		t.Cleanup(func() { s.Close() })
		return path
	}
	a, b := serve("a.sock"), serve("b.sock")
	// carried dials path and says whether the connection is carried: a
	// handler starts, or the connection is closed on arrival.
	carried := func(path string) (net.Conn, bool) {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		closed := make(chan error, 1)
		go func() {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := c.Read(make([]byte, 1))
			closed <- err
		}()
		select {
		case <-started:
			return c, true
		case err := <-closed:
			if !errors.Is(err, io.EOF) {
				t.Fatalf("connection to %s neither carried nor closed: %v", filepath.Base(path), err)
			}
			return c, false
		}
	}
	first, ok1 := carried(a)
	_, ok2 := carried(a)
	_, ok3 := carried(b)
	_, ok4 := carried(b)
	if !ok1 || !ok2 || !ok3 || ok4 {
		t.Fatalf("carried a, a, b, b: %v %v %v %v; want the fourth closed (budget of 3)", ok1, ok2, ok3, ok4)
	}
	first.Close()
	deadline := time.Now().Add(10 * time.Second)
	for connBudget.n.Load() > 2*connDescriptors && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if _, ok := carried(b); !ok {
		t.Errorf("a connection closed did not make room in the budget (%d taken)", connBudget.n.Load())
	}
}

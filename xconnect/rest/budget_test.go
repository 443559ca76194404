package rest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pantavisor/pv/xconnect"
)

// burstProvider is a provider whose answers to /burst wait until release
// is closed, each request first announced on arrived, so that a burst's
// requests each take a connection of their own; it counts the
// connections closed.
type burstProvider struct {
	arrived chan struct{}
	release chan struct{}
	closed  atomic.Int64
}

func startBurstProvider(t *testing.T, path string, burst int) *burstProvider {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	bp := &burstProvider{arrived: make(chan struct{}, burst), release: make(chan struct{})}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/burst" {
			bp.arrived <- struct{}{}
			<-bp.release
		}
		io.WriteString(w, "ok")
	}), ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			bp.closed.Add(1)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return bp
}

// get sends a GET for path through c and reads the whole answer.
func get(c *http.Client, path string) error {
	res, err := c.Get("http://api" + path)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", res.Status)
	}
	return nil
}

// consumersGone waits until the link's consumer connections are all
// closed, and so given back to the budget: the server counts one closed
// once its handler has returned and the connection is closed.
func consumersGone(t *testing.T, st *xconnect.Stats) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); st.Active.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d consumer connections still open", st.Active.Load())
		}
	}
}

// A rest link's idle connection to its provider holds a descriptor of
// the process-wide budget (its consumer's connection, whose Gate counted
// it, may be long gone), and is closed rather than kept when the budget
// has none left. Before, a link's idle connections, up to 16 each, were
// counted nowhere.
func TestKeptConnectionsCountInTheBudget(t *testing.T) {
	const burst = 3
	prov := filepath.Join(t.TempDir(), "prov.sock")
	bp := startBurstProvider(t, prov, burst)
	st := &xconnect.Stats{}
	p := newLink(prov, st)
	cons := serveLink(t, p)
	before := xconnect.DescriptorsLeft()

	c := consumerClient(cons)
	errc := make(chan error, burst)
	for range burst {
		go func() { errc <- get(c, "/burst") }()
	}
	for range burst {
		<-bp.arrived // every request of the burst on a connection of its own
	}
	close(bp.release)
	for range burst {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	c.CloseIdleConnections()
	consumersGone(t, st)
	if left := xconnect.DescriptorsLeft(); left != before-burst {
		t.Errorf("%d kept connections, and the budget went from %d to %d", burst, before, left)
	}
	p.Close()
	if left := xconnect.DescriptorsLeft(); left != before {
		t.Errorf("the link closed, and the budget is %d, was %d", left, before)
	}

	// The budget used up but for the consumer's connection: the
	// provider's is closed once its answer is read, not kept, and the
	// request is served all the same.
	st = &xconnect.Stats{}
	cons = serveLink(t, newLink(prov, st))
	spare := xconnect.DescriptorsLeft() - 2 // the consumer's connection: its Gate takes 2
	if !xconnect.TakeDescriptors(spare) {
		t.Fatal("the budget refused what it had left")
	}
	defer xconnect.GiveDescriptors(spare)
	closedBefore := bp.closed.Load()
	c = consumerClient(cons)
	defer c.CloseIdleConnections()
	if err := get(c, "/one"); err != nil {
		t.Fatalf("with the budget used up: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); bp.closed.Load() == closedBefore; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the provider's connection was kept with the budget used up")
		}
	}
}

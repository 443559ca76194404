package rest

import (
	"math"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/pantavisor/pv/internal/nstest"
	"github.com/pantavisor/pv/xconnect"
)

// TestConnectionCap: a consumer that opens connections to its rest link
// without end gets at most xconnect.DefaultMaxConns of them held; those
// beyond are closed on arrival and counted as errors. Each held one is a
// descriptor and goroutines of the supervisor (two descriptors while a
// request waits for the provider, up to 5 minutes), and enough of them
// took every descriptor it has.
func TestConnectionCap(t *testing.T) {
	const opened, maxConns = 1200, 1024
	prov := filepath.Join(t.TempDir(), "prov.sock")
	startProvider(t, prov)
	cons, st := startLink(t, prov)
	conns := nstest.DialMany(t, "unix", cons, opened)
	refused := nstest.Refused(t, conns, opened-maxConns)
	if refused != opened-maxConns {
		t.Fatalf("%d of %d idle connections closed, want %d (%d held); %+v", refused, opened, opened-maxConns, opened-refused, st.Snapshot())
	}
	if st.Errors.Load() != opened-maxConns {
		t.Errorf("refusals counted: %+v", st.Snapshot())
	}
}

// TestProcessWideBudget: the connections of every proxy count against one
// budget (every xconnect.Gate takes from it); with the budget spent by the others, a rest
// link's consumer connection is closed on arrival and counted as an error,
// and served again once one is given back.
func TestProcessWideBudget(t *testing.T) {
	prov := filepath.Join(t.TempDir(), "prov.sock")
	startProvider(t, prov)
	cons, st := startLink(t, prov)
	// What other links' connections would hold: the whole budget.
	var others xconnect.Gate
	others.SetMax(math.MaxInt32)
	taken := 0
	for others.Take() {
		taken++
	}
	defer func() {
		for range taken {
			others.Give()
		}
	}()
	if refused := nstest.Refused(t, nstest.DialMany(t, "unix", cons, 1), 1); refused != 1 || st.Errors.Load() != 1 {
		t.Fatalf("with the budget spent: %d of 1 connections closed, want 1; %+v", refused, st.Snapshot())
	}
	others.Give()
	taken--
	c := consumerClient(cons)
	resp, err := c.Get("http://api/x")
	if err != nil {
		t.Fatalf("with one given back: %v", err)
	}
	resp.Body.Close()
	c.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("with one given back: status %d, want 200", resp.StatusCode)
	}
}

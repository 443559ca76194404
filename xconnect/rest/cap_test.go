package rest

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/nstest"
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
	// The refusals come as the proxy accepts, at its pace: wait for
	// them, for as long as it takes.
	refused := 0
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		refused = 0
		for _, c := range conns {
			if nstest.ClosedByPeer(t, c) {
				refused++
			}
		}
		if refused >= opened-maxConns {
			break
		}
	}
	if refused != opened-maxConns {
		t.Fatalf("%d of %d idle connections closed, want %d (%d held); %+v", refused, opened, opened-maxConns, opened-refused, st.Snapshot())
	}
	if st.Errors.Load() != opened-maxConns {
		t.Errorf("refusals counted: %+v", st.Snapshot())
	}
}

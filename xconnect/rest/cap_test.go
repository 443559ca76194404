package rest

import (
	"path/filepath"
	"testing"

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
	conns := nstest.DialMany(t, "unix", cons, opened)
	refused := nstest.Refused(t, conns, opened-maxConns)
	if refused != opened-maxConns {
		t.Fatalf("%d of %d idle connections closed, want %d (%d held); %+v", refused, opened, opened-maxConns, opened-refused, st.Snapshot())
	}
	if st.Errors.Load() != opened-maxConns {
		t.Errorf("refusals counted: %+v", st.Snapshot())
	}
}

package http

import (
	"fmt"
	"net"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/nstest"
)

// TestConnectionCap: a client (an ingress listener's is anyone on the
// network) that opens connections without end and sends nothing gets at
// most xconnect.DefaultMaxConns of them held; those beyond are closed on
// arrival. Without a cap each cost a descriptor and a goroutine of the
// supervisor for the header timeout, and enough of them took every
// descriptor it has (no container start, no control socket).
func TestConnectionCap(t *testing.T) {
	const opened, maxConns = 1200, 1024
	base := serve(t, Options{ReadHeaderTimeout: 5 * time.Minute, IdleTimeout: 5 * time.Minute},
		Route{Prefix: "/", Dial: backend(t, func(w nethttp.ResponseWriter, r *nethttp.Request) { fmt.Fprint(w, "ok") })})
	addr := strings.TrimPrefix(base, "http://")
	conns := make([]net.Conn, 0, opened)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range opened {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// The refusals come as the server accepts, at its pace: wait for
	// them, for as long as it takes, then count once more.
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
		t.Fatalf("%d of %d idle connections closed, want %d (%d held)", refused, opened, opened-maxConns, opened-refused)
	}
}

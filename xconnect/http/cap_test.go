package http

import (
	"fmt"
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
	conns := nstest.DialMany(t, "tcp", addr, opened)
	refused := nstest.Refused(t, conns, opened-maxConns)
	if refused != opened-maxConns {
		t.Fatalf("%d of %d idle connections closed, want %d (%d held)", refused, opened, opened-maxConns, opened-refused)
	}
}

package tcp

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/xconnect"
)

// panicConn is a connection whose reads panic, as a bug in a splice or
// urgent-data step met by some peer's bytes would.
type panicConn struct{ net.Conn }

func (panicConn) Read([]byte) (int, error) { panic("a relay's bug") }

// TestRelayPanicIsAnError: a relay direction that panics ends that
// connection with an error; unrecovered, in a goroutine of its own, it
// killed the supervisor, and every container's service with it.
func TestRelayPanicIsAnError(t *testing.T) {
	c1, c2 := net.Pipe()
	b1, b2 := net.Pipe()
	defer c2.Close()
	defer b2.Close()
	err := relay(c1, panicConn{b1}, &xconnect.Stats{}, time.Hour)
	if err == nil || !strings.Contains(err.Error(), "a relay's bug") {
		t.Fatalf("relay ended with %v, want the panic's error", err)
	}
}

package xconnect

import (
	"net"
	"strings"
	"testing"
)

// TestBothWaysPanicIsAnError: a direction that panics (a bug in a
// plugin's pump, met by some peer's bytes) ends that connection pair
// with an error; unrecovered, in a goroutine of its own, it killed the
// supervisor, and every container's service with it.
func TestBothWaysPanicIsAnError(t *testing.T) {
	c1, c2 := net.Pipe()
	p1, p2 := net.Pipe()
	defer c2.Close()
	defer p2.Close()
	first, second := BothWays(c1, p1,
		func() error { panic("a pump's bug") },
		func() error {
			// Ends when BothWays closes the connections.
			_, err := p1.Read(make([]byte, 1))
			return err
		})
	if first == nil || !strings.Contains(first.Error(), "a pump's bug") {
		t.Fatalf("first error %v, want the panic's", first)
	}
	if second == nil {
		t.Fatal("the other direction was not ended")
	}
}

package unix

import (
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/nstest"
)

// budgetLimit is the descriptor limit the budget tests run under: a
// device's 4096, scaled down.
const budgetLimit = 1024

// However its consumers use it, a link holds at most a quarter of the
// supervisor's descriptors (xconnect's budget), the rest stays the
// supervisor's (containers' consoles, the control socket, logs). The
// budget counted connections, while a connection that carried bulk both
// ways holds eight (its two sockets, and a pipe and an fdinfo per
// direction), and one whose provider does not read holds the up to 253
// descriptors of the message it waits to pass on. Run under a limit of
// budgetLimit.
func TestProxyHoldsAQuarterOfTheDescriptors(t *testing.T) {
	if !nstest.UnderDescriptorLimit(t, budgetLimit) {
		return
	}
	quarter := budgetLimit / 4
	// The process's own, made at the first connection (the hang-up
	// watcher's epoll), belong to the baseline.
	warm := func(cons string) {
		c, err := net.Dial("unix", cons)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		time.Sleep(50 * time.Millisecond)
	}
	t.Run("bulk both ways", func(t *testing.T) {
		cons, _, _ := linkWith(t, nil, func(c *net.UnixConn) { io.Copy(c, c) })
		warm(cons)
		baseline := nstest.OpenDescriptors(t)
		const conns = 48
		chunk := make([]byte, 256<<10)
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for range conns {
			c, err := net.Dial("unix", cons)
			if err != nil {
				t.Fatal(err)
			}
			go c.Write(chunk)
			if _, err := io.ReadFull(c, make([]byte, len(chunk))); err != nil {
				// Closed on arrival: the budget is spent.
				c.Close()
				continue
			}
			open = append(open, c)
		}
		if len(open) < 8 {
			t.Fatalf("only %d of %d connections carried", len(open), conns)
		}
		if n := nstest.DescriptorsBeyond(t, baseline, 2*len(open)); n > quarter {
			t.Errorf("the link holds %d descriptors for %d connections that carried bulk, more than a quarter of %d", n, len(open), budgetLimit)
		}
	})
	t.Run("descriptors its provider does not read", func(t *testing.T) {
		cons, _, _ := linkWith(t, nil, func(c *net.UnixConn) {
			c.SetReadDeadline(time.Now().Add(time.Minute))
			c.Read(make([]byte, 0)) // holds the connection, reads nothing
			time.Sleep(time.Minute)
		})
		warm(cons)
		baseline := nstest.OpenDescriptors(t)
		const conns = 2
		fd := memfd(t, "x")
		defer unix.Close(fd)
		rights := unix.UnixRights(slices.Repeat([]int{fd}, 253)...)
		var open []*net.UnixConn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for range conns {
			c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: cons, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, c)
			// Until the provider's queue is full and the link waits
			// to pass one message on, holding its descriptors; then
			// this waits too, until the test closes c.
			go func() {
				for {
					if _, _, err := c.WriteMsgUnix([]byte("m"), rights, nil); err != nil {
						return
					}
				}
			}()
		}
		time.Sleep(500 * time.Millisecond)
		if n := nstest.DescriptorsBeyond(t, baseline, 2*conns); n > quarter {
			t.Errorf("the link holds %d descriptors for %d connections whose provider reads nothing, more than a quarter of %d", n, conns, budgetLimit)
		}
	})
}

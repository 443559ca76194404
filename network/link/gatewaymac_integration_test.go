//go:build integration

package link

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/pantavisor/pv/internal/nstest"
)

// The gateway's MAC (the bridge's) must not depend on which containers
// are attached. A bridge whose address was never set follows the lowest
// MAC of its ports: when the container whose veth lends it that MAC stops
// or restarts, the gateway's MAC changes under every other container of
// the pool, whose neighbour entry still names the old one, and their
// traffic through the gateway is lost until it is resolved again.
func TestGatewayMACSurvivesAContainerLeaving(t *testing.T) {
	nstest.Isolated(t)
	ensureBridge(t, "pvtest0", "10.91.0.1/24")
	gw := netip.MustParseAddr("10.91.0.1")
	brMAC := func() net.HardwareAddr {
		l, err := netlink.LinkByName("pvtest0")
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().HardwareAddr
	}
	before := brMAC()
	nstest.Echo(t, netns.None(), "10.91.0.1:9000") // a service on the gateway
	type ctr struct {
		ns  nstest.NS
		att Attachment
	}
	var cs []ctr
	for i := range 3 {
		ns := nstest.NewNS(t)
		att, err := AttachVeth("pvtest0", Endpoint{Container: fmt.Sprint("c", i), NetNS: ns.Path,
			Addr: netip.MustParsePrefix(fmt.Sprintf("10.91.0.%d/24", 10+i)), Gateway: gw,
			MAC: net.HardwareAddr{2, 0, 10, 91, 0, byte(10 + i)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = Detach(att) })
		cs = append(cs, ctr{ns, att})
		if _, err := nstest.Dial(ns.Handle, "10.91.0.1:9000", 3*time.Second); err != nil {
			t.Fatalf("c%d → gateway: %v", i, err)
		}
	}
	after := brMAC()
	if !bytes.Equal(before, after) {
		t.Errorf("gateway MAC changed from %s to %s when containers were attached", before, after)
	}
	// The container whose host veth is the bridge's MAC stops.
	owner := -1
	for i, c := range cs {
		l, err := netlink.LinkByName(c.att.HostLink)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(l.Attrs().HardwareAddr, after) {
			owner = i
		}
	}
	if owner < 0 {
		return // the bridge kept its own MAC: nothing more to show
	}
	if err := Detach(cs[owner].att); err != nil {
		t.Fatal(err)
	}
	t.Logf("c%d stopped; gateway MAC now %s (was %s)", owner, brMAC(), after)
	for i, c := range cs {
		if i == owner {
			continue
		}
		if _, err := nstest.Dial(c.ns.Handle, "10.91.0.1:9000", 2*time.Second); err != nil {
			t.Errorf("c%d → gateway after c%d stopped: %v", i, owner, err)
		}
	}
}

//go:build integration

package engine_test

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/runtime/engine"
	"github.com/pantavisor/pv/state"
)

// A pool may name a bridge the device already has (a platform made it,
// e.g. a LAN bridge or lxcbr0). Setup reuses it and Teardown leaves it.
// A supervisor that re-adopts the device after the previous one died must
// leave it too: it did not create it, and neither did its predecessor.
func TestAdoptedPoolLeavesAHostBridge(t *testing.T) {
	isolated.RequireNet(t, "hostbr")
	const name = "hostbr0"
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(br) })
	// The host's own address and rule on its bridge.
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 168, 7, 1), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	hostRule := []string{"-A", "FORWARD", "-i", name, "-o", name, "-j", "ACCEPT"}
	if out, err := exec.Command("iptables", hostRule...).CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}

	pool := state.Pool{Name: "lan", Type: state.PoolBridge, Bridge: name,
		Subnet: netip.MustParsePrefix("10.77.0.0/24"), Gateway: netip.MustParseAddr("10.77.0.1")}

	// First supervisor: sets the pool up on the existing bridge, then dies
	// (no teardown).
	if _, err := (&engine.Pools{Isolation: true}).Setup(pool, nil); err != nil {
		t.Fatal(err)
	}
	// Second supervisor: re-adopts, and later stops the pool (shutdown).
	s, err := (&engine.Pools{Isolation: true}).Adopt(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Teardown(); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(name); err != nil {
		t.Errorf("host bridge %s deleted by the adopted pool's teardown: %v", name, err)
	}
	out, _ := exec.Command("iptables", "-S", "FORWARD").CombinedOutput()
	if !strings.Contains(string(out), strings.Join(hostRule[1:], " ")) {
		t.Errorf("host rule %q deleted by the adopted pool's teardown; FORWARD is now:\n%s", strings.Join(hostRule, " "), out)
	}
}

// A pool on a bridge the device already has adds its gateway address to
// it; Teardown must take that address away again ("everything a pool
// created is removed"), or the host keeps answering on the pool's gateway
// and routing the pool's subnet onto that bridge.
func TestTeardownTakesTheGatewayOffAHostBridge(t *testing.T) {
	isolated.RequireNet(t, "hostbr")
	const name = "hostbr1"
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(br) })
	pool := state.Pool{Name: "lan", Type: state.PoolBridge, Bridge: name,
		Subnet: netip.MustParsePrefix("10.78.0.0/24"), Gateway: netip.MustParseAddr("10.78.0.1")}
	s, err := (&engine.Pools{Isolation: true}).Setup(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Teardown(); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("host bridge gone: %v", err)
	}
	addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
	for _, a := range addrs {
		if a.IP.Equal(net.IPv4(10, 78, 0, 1)) {
			t.Errorf("pool's gateway %s still on %s after teardown", a.IPNet, name)
		}
	}
}

// A bridge pantavisor made (an earlier supervisor of this boot) is the
// adopting pool's: its teardown removes it and the pool's rules.
func TestAdoptedPoolRemovesTheBridgeItMade(t *testing.T) {
	isolated.RequireNet(t, "pvown")
	const name = "pvown0"
	pool := state.Pool{Name: "lan", Type: state.PoolBridge, Bridge: name, NAT: true,
		Subnet: netip.MustParsePrefix("10.79.0.0/24"), Gateway: netip.MustParseAddr("10.79.0.1")}
	if _, err := (&engine.Pools{Isolation: true}).Setup(pool, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil {
			netlink.LinkDel(l)
		}
	})
	s, err := (&engine.Pools{Isolation: true}).Adopt(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Teardown(); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(name); err == nil {
		t.Errorf("the bridge pantavisor made stays after the adopted pool's teardown")
	}
	out, _ := exec.Command("iptables", "-t", "nat", "-S", "POSTROUTING").CombinedOutput()
	if strings.Contains(string(out), "10.79.0.0/24") {
		t.Errorf("the pool's NAT rule stays:\n%s", out)
	}
}

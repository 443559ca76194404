//go:build integration

package nat

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/nstest"
	"github.com/pantavisor/pv/network/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

const (
	fail = 400 * time.Millisecond // a dial that must not connect
	ok   = 3 * time.Second
)

var backends = []struct{ binary, mode string }{
	{NFTBinary, "nf_tables"},
	{LegacyBinary, "legacy"},
}

// world is the test topology, in the test's own netns ("the device"):
//
//	WAN netns eth0 10.88.0.2/24 ── wan0 10.88.0.1/24 [device]
//	pvA 10.90.1.1/24: a1 10.90.1.10, a2 10.90.1.11
//	pvB 10.90.2.1/24: b1 10.90.2.10
//
// Every container and the WAN run an echo of the caller's address on :9000.
type world struct {
	wan, a1, a2, b1 netns.NsHandle
}

func newWorld(t *testing.T) world {
	t.Helper()
	var w world
	for _, br := range []struct{ name, gw string }{{"pvA", "10.90.1.1/24"}, {"pvB", "10.90.2.1/24"}} {
		if _, err := link.EnsureBridge(br.name, netip.MustParsePrefix(br.gw)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := link.RemoveBridge(br.name); err != nil {
				t.Error(err)
			}
		})
	}
	wan := nstest.NewNS(t)
	w.wan = wan.Handle
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wan0", Flags: net.FlagUp},
		PeerName: "eth0", PeerNamespace: netlink.NsFd(int(wan.Handle))}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(v) })
	if err := netlink.AddrAdd(v, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 88, 0, 1), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(wan.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	peer, _ := h.LinkByName("eth0")
	if err := h.AddrAdd(peer, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 88, 0, 2), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	nstest.Echo(t, w.wan, "10.88.0.2:9000")

	ctr := func(name, bridge, addr, gw string) netns.NsHandle {
		ns := nstest.NewNS(t)
		a, err := link.AttachVeth(bridge, link.Endpoint{Container: name, NetNS: ns.Path,
			Addr: netip.MustParsePrefix(addr), Gateway: netip.MustParseAddr(gw)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := link.Detach(a); err != nil {
				t.Error(err)
			}
		})
		ip := strings.Split(addr, "/")[0]
		nstest.Echo(t, ns.Handle, ip+":9000")
		return ns.Handle
	}
	w.a1 = ctr("a1", "pvA", "10.90.1.10/24", "10.90.1.1")
	w.a2 = ctr("a2", "pvA", "10.90.1.11/24", "10.90.1.1")
	w.b1 = ctr("b1", "pvB", "10.90.2.10/24", "10.90.2.1")
	return w
}

// reach asserts that a dial from ns to addr gives the echo source want
// ("" = must not connect).
func reach(t *testing.T, what string, ns netns.NsHandle, addr, want string) {
	t.Helper()
	timeout := ok
	if want == "" {
		timeout = fail
	}
	got, err := nstest.Dial(ns, addr+":9000", timeout)
	switch {
	case want == "" && err == nil:
		t.Errorf("%s: connected (seen as %s), want no connection", what, got)
	case want != "" && err != nil:
		t.Errorf("%s: %v, want seen as %s", what, err, want)
	case want != "" && got != want:
		t.Errorf("%s: seen as %s, want %s", what, got, want)
	}
}

func apply(t *testing.T, b *Backend, cfg Config) *Rules {
	t.Helper()
	r, err := Apply(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Remove(); err != nil {
			t.Error(err)
		}
	})
	return r
}

func forEachBackend(t *testing.T, fn func(t *testing.T, b *Backend)) {
	nstest.Isolated(t)
	for _, be := range backends {
		t.Run(be.mode, func(t *testing.T) {
			b, err := NewBackend(be.binary)
			if err != nil {
				t.Fatal(err)
			}
			if b.Mode != be.mode || !strings.Contains(b.Version, "iptables v") {
				t.Fatalf("backend %s: mode %q version %q, want mode %q", be.binary, b.Mode, b.Version, be.mode)
			}
			t.Logf("backend %s", b)
			linksBefore := nstest.Links(t)
			tablesBefore := nstest.Tables(t, b.Path)
			t.Cleanup(func() {
				if got := nstest.Links(t); strings.Join(got, " ") != strings.Join(linksBefore, " ") {
					t.Errorf("links after = %v, before = %v", got, linksBefore)
				}
				if got := nstest.Tables(t, b.Path); got != tablesBefore {
					t.Errorf("tables after:\n%s\nbefore:\n%s", got, tablesBefore)
				}
			})
			fn(t, b)
		})
	}
}

// TestNATAndIsolation: a NAT pool reaches the WAN masqueraded; a plain pool
// is not NATed; the pools cannot reach each other; a pool reaches itself.
func TestNATAndIsolation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *Backend) {
		w := newWorld(t)
		setForward(t, "0")
		ra := apply(t, b, Config{Pool: "A", Bridge: "pvA", Subnet: netip.MustParsePrefix("10.90.1.0/24"), NAT: true, Peers: []string{"pvB"}})
		apply(t, b, Config{Pool: "B", Bridge: "pvB", Subnet: netip.MustParsePrefix("10.90.2.0/24"), Peers: []string{"pvA"}})
		if ra.ForwardWas != "0" || forward(t) != "1" {
			t.Fatalf("ip_forward was %q is %q, want 0 then 1", ra.ForwardWas, forward(t))
		}
		if n := len(ra.Added()); n != 6 {
			t.Errorf("pool A added %d rules, want 6 (2 DROP, intra ACCEPT, MASQUERADE, 2 ACCEPT): %v", n, ra.Added())
		}
		reach(t, "a1 → WAN (NAT)", w.a1, "10.88.0.2", "10.88.0.1")
		reach(t, "a1 → a2 (same pool)", w.a1, "10.90.1.11", "10.90.1.10")
		reach(t, "a1 → b1 (other pool)", w.a1, "10.90.2.10", "")
		reach(t, "b1 → a2 (other pool)", w.b1, "10.90.1.11", "")
		// Pool B has no NAT: its packets leave with their own source and the
		// WAN cannot answer them...
		reach(t, "b1 → WAN, no NAT, no return route", w.b1, "10.88.0.2", "")
		// ...unless it routes the pool's subnet back to the device.
		wanRoute(t, w.wan, "10.90.2.0/24")
		reach(t, "b1 → WAN, no NAT, routed", w.b1, "10.88.0.2", "10.90.2.10")
	})
}

// TestIsolationOff: with AllowInterPool the pools reach each other.
func TestIsolationOff(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *Backend) {
		w := newWorld(t)
		apply(t, b, Config{Pool: "A", Bridge: "pvA", Subnet: netip.MustParsePrefix("10.90.1.0/24"), NAT: true, Peers: []string{"pvB"}, AllowInterPool: true})
		apply(t, b, Config{Pool: "B", Bridge: "pvB", Subnet: netip.MustParsePrefix("10.90.2.0/24"), Peers: []string{"pvA"}, AllowInterPool: true})
		// A is NATed out of pvA, so b1 sees pvB's address.
		reach(t, "a1 → b1", w.a1, "10.90.2.10", "10.90.2.1")
		reach(t, "b1 → a2", w.b1, "10.90.1.11", "10.90.2.10")
		reach(t, "a1 → WAN", w.a1, "10.88.0.2", "10.88.0.1")
	})
}

// TestForwardPolicyDrop: with a DROP policy on FORWARD (set by the test, not
// by the package), NATed and same-pool traffic still flow; everything else
// stays dropped.
func TestForwardPolicyDrop(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *Backend) {
		w := newWorld(t)
		nstest.Run(t, b.Path, "-w", "-P", "FORWARD", "DROP")
		t.Cleanup(func() { nstest.Run(t, b.Path, "-w", "-P", "FORWARD", "ACCEPT") })
		wanRoute(t, w.wan, "10.90.2.0/24")
		// Before any rule: nothing is forwarded.
		setForward(t, "1")
		reach(t, "a1 → WAN without rules", w.a1, "10.88.0.2", "")
		apply(t, b, Config{Pool: "A", Bridge: "pvA", Subnet: netip.MustParsePrefix("10.90.1.0/24"), NAT: true, Peers: []string{"pvB"}})
		apply(t, b, Config{Pool: "B", Bridge: "pvB", Subnet: netip.MustParsePrefix("10.90.2.0/24"), Peers: []string{"pvA"}})
		reach(t, "a1 → WAN (NAT)", w.a1, "10.88.0.2", "10.88.0.1")
		reach(t, "a1 → a2 (same pool)", w.a1, "10.90.1.11", "10.90.1.10")
		reach(t, "a1 → b1 (other pool)", w.a1, "10.90.2.10", "")
		reach(t, "b1 → WAN (no NAT, policy DROP)", w.b1, "10.88.0.2", "")
	})
}

// TestRemoveKeepsForeignRules: a rule that existed before Apply is not
// Apply's and survives Remove; Remove twice is fine.
func TestRemoveKeepsForeignRules(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *Backend) {
		masq := []string{"-t", "nat", "-A", "POSTROUTING", "-s", "10.90.1.0/24", "!", "-o", "pvA", "-j", "MASQUERADE"}
		nstest.Run(t, b.Path, append([]string{"-w"}, masq...)...)
		r, err := Apply(b, Config{Pool: "A", Bridge: "pvA", Subnet: netip.MustParsePrefix("10.90.1.0/24"), NAT: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, rule := range r.Added() {
			if rule.Chain == "POSTROUTING" {
				t.Errorf("Apply claims the pre-existing %s", rule)
			}
		}
		if err := r.Remove(); err != nil {
			t.Fatal(err)
		}
		if err := r.Remove(); err != nil {
			t.Fatalf("second Remove: %v", err)
		}
		if !strings.Contains(nstest.Tables(t, b.Path), "-A POSTROUTING -s 10.90.1.0/24 ! -o pvA -j MASQUERADE") {
			t.Fatal("Remove deleted the pre-existing MASQUERADE rule")
		}
		masq[2] = "-D"
		nstest.Run(t, b.Path, append([]string{"-w"}, masq...)...)
	})
}

func forward(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(ipForward)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func setForward(t *testing.T, v string) {
	t.Helper()
	if err := os.WriteFile(ipForward, []byte(v), 0o644); err != nil {
		t.Fatal(err)
	}
}

// wanRoute makes the WAN route dst back to the device (10.88.0.1).
func wanRoute(t *testing.T, wan netns.NsHandle, dst string) {
	t.Helper()
	h, err := netlink.NewHandleAt(wan)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, ipn, _ := net.ParseCIDR(dst)
	if err := h.RouteAdd(&netlink.Route{Dst: ipn, Gw: net.IPv4(10, 88, 0, 1)}); err != nil {
		t.Fatal(err)
	}
}

// answer listens on addr in this namespace (the device) and answers each
// connection with "device": a connection that reaches the listener rather
// than the backend says so.
func answer(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	nstest.ServeEach(t, ln, func(c net.Conn) { c.Write([]byte("device\n")) })
}

// seenAs dials addr from ns (netns.None(): from the device) and asserts
// what answered: an echo's view of the source, or "device".
func seenAs(t *testing.T, what string, ns netns.NsHandle, addr, want string) {
	t.Helper()
	got, err := nstest.Dial(ns, addr, ok)
	if err != nil || got != want {
		t.Errorf("%s: %q %v, want %q", what, got, err, want)
	}
}

// TestForwards: with a FORWARD policy of DROP, a client outside the
// device reaches a pool member through a forward, seen with its own
// address (no proxy in between); the device itself and the pools'
// members reach the listener instead; removing the forwards (the last
// one takes the chains) leaves the tables as they were, a dead
// supervisor's leftovers included.
func TestForwards(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *Backend) {
		w := newWorld(t)
		nstest.Run(t, b.Path, "-w", "-P", "FORWARD", "DROP")
		t.Cleanup(func() { nstest.Run(t, b.Path, "-w", "-P", "FORWARD", "ACCEPT") })
		setForward(t, "1")
		// The device's own connections go through lo, down in a fresh
		// namespace.
		if lo, err := netlink.LinkByName("lo"); err != nil || netlink.LinkSetUp(lo) != nil {
			t.Fatalf("lo up: %v", err)
		}
		answer(t, "0.0.0.0:7000")
		answer(t, "0.0.0.0:7001")
		// A previous supervisor's forward, to a backend that is gone.
		for _, args := range [][]string{{"-t", "nat", "-N", ForwardChain}, {"-t", "nat", "-A", "PREROUTING", "-j", ForwardChain},
			{"-t", "nat", "-A", ForwardChain, "-p", "tcp", "--dport", "7000", "-j", "DNAT", "--to-destination", "10.90.1.99:9000"}} {
			nstest.Run(t, b.Path, append([]string{"-w"}, args...)...)
		}

		fs := NewForwards(b.Path)
		local := []string{"pvB", "pvA", "pvA"}
		f1 := Forward{Listen: netip.MustParseAddrPort("0.0.0.0:7000"), To: netip.MustParseAddrPort("10.90.1.10:9000"), Local: local}
		rm1, err := fs.Add(f1)
		if err != nil {
			t.Fatal(err)
		}
		f2 := Forward{Listen: netip.MustParseAddrPort("10.88.0.1:7001"), To: netip.MustParseAddrPort("10.90.2.10:9000"), Local: local}
		rm2, err := fs.Add(f2)
		if err != nil {
			t.Fatal(err)
		}
		tables := nstest.Tables(t, b.Path)
		if strings.Contains(tables, "10.90.1.99") || strings.Count(tables, "-j RETURN") != 2 {
			t.Errorf("leftover kept or RETURN rules not shared:\n%s", tables)
		}
		seenAs(t, "WAN → :7000", w.wan, "10.88.0.1:7000", "10.88.0.2")
		seenAs(t, "WAN → 10.88.0.1:7001", w.wan, "10.88.0.1:7001", "10.88.0.2")
		seenAs(t, "device → :7000 (local)", netns.None(), "127.0.0.1:7000", "device")
		seenAs(t, "device → wan0:7000 (local)", netns.None(), "10.88.0.1:7000", "device")
		seenAs(t, "a2 → its gateway:7000 (pool)", w.a2, "10.90.1.1:7000", "device")
		seenAs(t, "b1 → 10.88.0.1:7000 (other pool)", w.b1, "10.88.0.1:7000", "device")
		// The accept is exactly the forward's: the pool member itself is
		// not reachable from outside.
		wanRoute(t, w.wan, "10.90.1.0/24")
		if got, err := nstest.Dial(w.wan, "10.90.1.10:9000", fail); err == nil {
			t.Errorf("WAN reached a1 directly (seen as %s): the accept is too wide", got)
		}
		// One outside connection each went through the kernel; the
		// device's and the pools' own went to the listener.
		for _, f := range []Forward{f1, f2} {
			if n, err := fs.Connections(f); err != nil || n != 1 {
				t.Errorf("connections of %s: %d %v, want 1", f, n, err)
			}
		}

		if err := rm1(); err != nil {
			t.Fatal(err)
		}
		if err := rm1(); err != nil {
			t.Fatalf("second remove: %v", err)
		}
		seenAs(t, "WAN → :7000 after remove", w.wan, "10.88.0.1:7000", "device")
		seenAs(t, "WAN → 10.88.0.1:7001, the other forward", w.wan, "10.88.0.1:7001", "10.88.0.2")
		if err := rm2(); err != nil {
			t.Fatal(err)
		}
		if s := nstest.Tables(t, b.Path); strings.Contains(s, ForwardChain) {
			t.Errorf("chains left after the last forward:\n%s", s)
		}
	})
}

// TestForwardsReset: a supervisor started again removes the forwards the
// dead one left, jumps included, even when it adds none itself; it leaves
// nothing when there was nothing, and keeps what it installed itself.
func TestForwardsReset(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *Backend) {
		setForward(t, "1")
		before := nstest.Tables(t, b.Path)
		dead := NewForwards(b.Path)
		if _, err := dead.Add(Forward{Listen: netip.MustParseAddrPort("0.0.0.0:7000"), To: netip.MustParseAddrPort("10.90.1.10:9000")}); err != nil {
			t.Fatal(err)
		}
		if s := nstest.Tables(t, b.Path); !strings.Contains(s, "10.90.1.10") {
			t.Fatalf("no forward installed:\n%s", s)
		}
		next := NewForwards(b.Path)
		if err := next.Reset(); err != nil {
			t.Fatal(err)
		}
		if s := nstest.Tables(t, b.Path); s != before {
			t.Errorf("left after reset:\n%s\nwant:\n%s", s, before)
		}
		if err := next.Reset(); err != nil {
			t.Errorf("reset with nothing to remove: %v", err)
		}
		rm, err := next.Add(Forward{Listen: netip.MustParseAddrPort("0.0.0.0:7001"), To: netip.MustParseAddrPort("10.90.1.11:9000")})
		if err != nil {
			t.Fatal(err)
		}
		if err := next.Reset(); err != nil || !strings.Contains(nstest.Tables(t, b.Path), "10.90.1.11") {
			t.Errorf("reset removed this process's own forward (%v)", err)
		}
		if err := rm(); err != nil {
			t.Fatal(err)
		}
	})
}

// A supervisor re-adopting the device takes the rules that are there as
// its pool's, without adding them twice, and finds every one of them in
// the chains' listing (as iptables prints them), so none costs an
// iptables run of its own; Remove then removes them all.
func TestAdoptTakesTheRulesThatAreThere(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *Backend) {
		cfg := Config{Pool: "A", Bridge: "pvA", Subnet: netip.MustParsePrefix("10.90.1.0/24"), NAT: true, Peers: []string{"pvB"}}
		first, err := Apply(b, cfg)
		if err != nil {
			t.Fatal(err)
		}
		before := nstest.Tables(t, b.Path)
		listed := listChains(b, Plan(cfg))
		for _, rule := range Plan(cfg) {
			if !listed[rule.String()] {
				t.Errorf("%s is not found in its chain's listing", rule)
			}
		}
		cfg.Adopt = true
		again, err := Apply(b, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := nstest.Tables(t, b.Path); got != before {
			t.Errorf("adopting changed the tables:\n%s\nwant:\n%s", got, before)
		}
		if len(again.Added()) != len(first.Added()) {
			t.Errorf("adopted %d rules, want the %d applied", len(again.Added()), len(first.Added()))
		}
		if err := again.Remove(); err != nil {
			t.Fatal(err)
		}
		for _, rule := range first.Added() {
			if strings.Contains(nstest.Tables(t, b.Path), "-A "+rule.Chain+" "+strings.Join(rule.Spec, " ")) {
				t.Errorf("%s left after Remove", rule)
			}
		}
	})
}

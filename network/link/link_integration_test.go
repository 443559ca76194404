//go:build integration

package link

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/nstest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ensureBridge makes a bridge removed when the test ends.
func ensureBridge(t testing.TB, name, gw string) Bridge {
	t.Helper()
	br, err := EnsureBridge(name, netip.MustParsePrefix(gw))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := RemoveBridge(name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return br
}

func attachVeth(t testing.TB, bridge string, ep Endpoint) Attachment {
	t.Helper()
	a, err := AttachVeth(bridge, ep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Detach(a); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return a
}

// checkGone fails t when the current netns has links beyond want.
func checkLinks(t *testing.T, want []string) {
	t.Helper()
	if got := nstest.Links(t); !slices.Equal(got, want) {
		t.Fatalf("links = %v, want %v", got, want)
	}
}

func TestBridgeEnsureRemove(t *testing.T) {
	nstest.Isolated(t)
	br, err := EnsureBridge("pvtest0", netip.MustParsePrefix("10.90.0.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = RemoveBridge("pvtest0") })
	if !br.Created || br.Index == 0 {
		t.Fatalf("first EnsureBridge = %+v, want Created", br)
	}
	again, err := EnsureBridge("pvtest0", netip.MustParsePrefix("10.90.0.1/24"))
	if err != nil || again.Created || again.Index != br.Index {
		t.Fatalf("second EnsureBridge = %+v, %v; want the same bridge, not created", again, err)
	}
	l, err := netlink.LinkByName("pvtest0")
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		t.Error("bridge is not up")
	}
	addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.90.0.1/24" {
		t.Errorf("bridge addresses = %v, want [10.90.0.1/24]", addrs)
	}
	if err := RemoveBridge("pvtest0"); err != nil {
		t.Fatal(err)
	}
	if err := RemoveBridge("pvtest0"); err != nil {
		t.Fatalf("RemoveBridge of a missing bridge: %v", err)
	}
	checkLinks(t, []string{"lo"})
}

func TestBridgeErrors(t *testing.T) {
	nstest.Isolated(t)
	// This kernel has no dummy links; a veth stands in for "not a bridge".
	addVeth(t, nil, "notabr0")
	tests := []struct {
		name, bridge, gw string
		want             error
		text             string
	}{
		{"dummy in the way", "notabr0", "10.90.0.1/24", ErrNotBridge, "ensure bridge notabr0: check type: link is a veth"},
		{"name too long", "averyveryverylongname", "10.90.0.1/24", ErrInvalid, "check name"},
		// The kernel would end the name at the NUL and find notabr0.
		{"name with a NUL", "notabr0\x00x", "10.90.0.1/24", ErrInvalid, "check name"},
		{"name with a carriage return", "pv\rtest", "10.90.0.1/24", ErrInvalid, "check name"},
		{"ipv6 gateway", "pvtest1", "fd00::1/64", ErrInvalid, "check gateway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := EnsureBridge(tt.bridge, netip.MustParsePrefix(tt.gw))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tt.want, tt.text)
			}
		})
	}
	if err := RemoveBridge("notabr0"); !errors.Is(err, ErrNotBridge) {
		t.Fatalf("RemoveBridge(veth) = %v, want ErrNotBridge", err)
	}
	if _, err := netlink.LinkByName("notabr0"); err != nil {
		t.Fatalf("the veth was deleted: %v", err)
	}
	if _, err := netlink.LinkByName("pvtest1"); err == nil {
		t.Fatal("failed EnsureBridge left pvtest1 behind")
	}
}

// TestVethTwoContainers: two containers on one bridge talk TCP, and each
// sees its static address, MAC and route from inside.
func TestVethTwoContainers(t *testing.T) {
	nstest.Isolated(t)
	ensureBridge(t, "pvtest0", "10.90.0.1/24")
	c1, c2 := nstest.NewNS(t), nstest.NewNS(t)
	gw := netip.MustParseAddr("10.90.0.1")
	mac1, _ := net.ParseMAC("02:00:0a:5a:00:0a")
	mac2, _ := net.ParseMAC("02:aa:bb:cc:dd:ee")
	a1 := attachVeth(t, "pvtest0", Endpoint{Container: "web", NetNS: c1.Path,
		Addr: netip.MustParsePrefix("10.90.0.10/24"), Gateway: gw, MAC: mac1})
	attachVeth(t, "pvtest0", Endpoint{Container: "cli", NetNS: c2.Path,
		Addr: netip.MustParsePrefix("10.90.0.77/24"), Gateway: gw, MAC: mac2})

	if a1.HostLink != HostVethName("web") || a1.Kind != KindVeth || a1.Index == 0 {
		t.Fatalf("attachment = %+v", a1)
	}
	host, err := netlink.LinkByName(a1.HostLink)
	if err != nil {
		t.Fatal(err)
	}
	br, _ := netlink.LinkByName("pvtest0")
	if host.Attrs().MasterIndex != br.Attrs().Index || host.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("host end master %d up %v, want master %d and up", host.Attrs().MasterIndex,
			host.Attrs().Flags&net.FlagUp != 0, br.Attrs().Index)
	}
	checkInside(t, c1.Handle, "10.90.0.10/24", mac1, gw)
	checkInside(t, c2.Handle, "10.90.0.77/24", mac2, gw)

	nstest.Echo(t, c1.Handle, "10.90.0.10:7000")
	src, err := nstest.Dial(c2.Handle, "10.90.0.10:7000", 3*time.Second)
	if err != nil || src != "10.90.0.77" {
		t.Fatalf("cli → web = %q, %v; want seen as 10.90.0.77", src, err)
	}
	// The bridge (the host) reaches the container too.
	nstest.Echo(t, c2.Handle, "10.90.0.77:7001")
	if src, err := nstest.Dial(netns.None(), "10.90.0.77:7001", 3*time.Second); err != nil || src != "10.90.0.1" {
		t.Fatalf("host → cli = %q, %v; want seen as 10.90.0.1", src, err)
	}
}

// checkInside reads eth0, lo and the default route back from inside ns.
func checkInside(t *testing.T, ns netns.NsHandle, addr string, mac net.HardwareAddr, gw netip.Addr) {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatalf("eth0 in netns: %v", err)
	}
	if l.Attrs().HardwareAddr.String() != mac.String() {
		t.Errorf("eth0 MAC = %s, want %s", l.Attrs().HardwareAddr, mac)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		t.Error("eth0 is down")
	}
	addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != addr {
		t.Errorf("eth0 addresses = %v, want [%s]", addrs, addr)
	}
	lo, _ := h.LinkByName("lo")
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Error("lo is down")
	}
	routes, _ := h.RouteList(l, netlink.FAMILY_V4)
	found := false
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.Equal(gw.AsSlice()) {
			found = true
		}
	}
	if !found {
		t.Errorf("no default route via %s in %v", gw, routes)
	}
}

func TestAttachVethErrors(t *testing.T) {
	nstest.Isolated(t)
	ensureBridge(t, "pvtest0", "10.90.0.1/24")
	c := nstest.NewNS(t)
	// An eth0 already in the container makes the pair fail after the host
	// end may have been made: nothing must be left behind.
	h, _ := netlink.NewHandleAt(c.Handle)
	defer h.Close()
	addVeth(t, h, "eth0")
	taken := nstest.NewNS(t) // a clean container netns for the other cases
	good := netip.MustParsePrefix("10.90.0.10/24")
	gw := netip.MustParseAddr("10.90.0.1")
	tests := []struct {
		name, bridge string
		ep           Endpoint
		want         error
		text         string
	}{
		{"no bridge", "nobr0", Endpoint{Container: "web", NetNS: c.Path, Addr: good}, nil, "find bridge nobr0"},
		{"bridge is lo", "lo", Endpoint{Container: "web", NetNS: c.Path, Addr: good}, ErrNotBridge, "check bridge lo"},
		{"no netns", "pvtest0", Endpoint{Container: "web", NetNS: "/proc/1/fd/9999", Addr: good}, nil, "open netns"},
		{"eth0 taken", "pvtest0", Endpoint{Container: "web", NetNS: c.Path, Addr: good, Gateway: gw}, nil, "add pair"},
		{"no container", "pvtest0", Endpoint{NetNS: c.Path, Addr: good}, ErrInvalid, "no container name"},
		{"gateway outside", "pvtest0", Endpoint{Container: "web", NetNS: taken.Path, Addr: good,
			Gateway: netip.MustParseAddr("10.91.0.1")}, ErrInvalid, "gateway 10.91.0.1 outside"},
		{"multicast mac", "pvtest0", Endpoint{Container: "web", NetNS: taken.Path, Addr: good, Gateway: gw,
			MAC: net.HardwareAddr{0x01, 0, 0, 0, 0, 1}}, nil, "attach veth " + HostVethName("web") + " for web"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := AttachVeth(tt.bridge, tt.ep)
			if err == nil {
				_ = Detach(a)
				t.Fatal("AttachVeth succeeded")
			}
			if (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tt.want, tt.text)
			}
			checkLinks(t, []string{"lo", "pvtest0"})
			hh, _ := netlink.NewHandleAt(taken.Handle)
			defer hh.Close()
			if ls, _ := hh.LinkList(); len(ls) != 1 {
				t.Fatalf("container netns has %d links after a failed attach", len(ls))
			}
		})
	}
}

// TestAttachVethReplacesLeftover: a second attach for the same container
// (a restart whose old veth survived) replaces the old pair.
func TestAttachVethReplacesLeftover(t *testing.T) {
	nstest.Isolated(t)
	ensureBridge(t, "pvtest0", "10.90.0.1/24")
	old, c := nstest.NewNS(t), nstest.NewNS(t)
	ep := Endpoint{Container: "web", NetNS: old.Path, Addr: netip.MustParsePrefix("10.90.0.10/24")}
	if _, err := AttachVeth("pvtest0", ep); err != nil {
		t.Fatal(err)
	}
	ep.NetNS = c.Path
	a := attachVeth(t, "pvtest0", ep)
	h, _ := netlink.NewHandleAt(old.Handle)
	defer h.Close()
	if _, err := h.LinkByName("eth0"); err == nil {
		t.Fatal("old container still has eth0")
	}
	if err := Detach(a); err != nil {
		t.Fatal(err)
	}
	if err := Detach(a); err != nil {
		t.Fatalf("second Detach: %v", err)
	}
	checkLinks(t, []string{"lo", "pvtest0"})
}

// TestMacvlan: a container on a macvlan pool gets its address on the
// parent's segment and reaches another host there.
func TestMacvlan(t *testing.T) {
	nstest.Isolated(t)
	lanHost, c := nstest.NewNS(t), nstest.NewNS(t)
	// Parent: a veth whose peer is the "other host" of the segment.
	parent := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lan0", Flags: net.FlagUp},
		PeerName: "eth0", PeerNamespace: netlink.NsFd(int(lanHost.Handle))}
	if err := netlink.LinkAdd(parent); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(parent) })
	h, _ := netlink.NewHandleAt(lanHost.Handle)
	defer h.Close()
	peer, _ := h.LinkByName("eth0")
	_ = h.AddrAdd(peer, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 91, 0, 10), Mask: net.CIDRMask(24, 32)}})
	_ = h.LinkSetUp(peer)

	mac, _ := net.ParseMAC("02:00:0a:5b:00:14")
	gw := netip.MustParseAddr("10.91.0.1")
	a, err := AttachMacvlan("lan0", Endpoint{Container: "web", NetNS: c.Path,
		Addr: netip.MustParsePrefix("10.91.0.20/24"), Gateway: gw, MAC: mac})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Detach(a) })
	if a.Kind != KindMacvlan || a.Master != "lan0" || a.HostLink != "" {
		t.Fatalf("attachment = %+v", a)
	}
	checkInside(t, c.Handle, "10.91.0.20/24", mac, gw)
	ch, _ := netlink.NewHandleAt(c.Handle)
	defer ch.Close()
	if l, _ := ch.LinkByName("eth0"); l == nil || l.Type() != "macvlan" {
		t.Fatalf("eth0 in container is %v, want a macvlan", l)
	}
	checkLinks(t, []string{"lan0", "lo"}) // nothing on the host side

	nstest.Echo(t, lanHost.Handle, "10.91.0.10:7000")
	if src, err := nstest.Dial(c.Handle, "10.91.0.10:7000", 3*time.Second); err != nil || src != "10.91.0.20" {
		t.Fatalf("container → LAN host = %q, %v; want seen as 10.91.0.20", src, err)
	}
	if err := Detach(a); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.LinkByName("eth0"); err == nil {
		t.Fatal("macvlan still in the container after Detach")
	}
	if err := Detach(a); err != nil {
		t.Fatalf("second Detach: %v", err)
	}

	// Errors: a missing parent; a taken eth0 leaves nothing behind.
	if _, err := AttachMacvlan("nolan0", Endpoint{Container: "web", NetNS: c.Path,
		Addr: netip.MustParsePrefix("10.91.0.20/24")}); err == nil || !strings.Contains(err.Error(), "attach macvlan on nolan0 for web: find parent") {
		t.Fatalf("missing parent: err = %v", err)
	}
	addVeth(t, ch, "eth0")
	if _, err := AttachMacvlan("lan0", Endpoint{Container: "web", NetNS: c.Path,
		Addr: netip.MustParsePrefix("10.91.0.20/24")}); err == nil || !strings.Contains(err.Error(), "add macvlan") {
		t.Fatalf("eth0 taken: err = %v", err)
	}
	if l, _ := ch.LinkByName("eth0"); l == nil || l.Type() != "veth" {
		t.Fatalf("the container's own eth0 was touched: %v", l)
	}
}

// TestMacvlanDetachAfterNetnsGone: the container's netns died with it.
func TestMacvlanDetachAfterNetnsGone(t *testing.T) {
	nstest.Isolated(t)
	addVeth(t, nil, "lan0")
	c := nstest.NewNS(t)
	a, err := AttachMacvlan("lan0", Endpoint{Container: "web", NetNS: c.Path,
		Addr: netip.MustParsePrefix("10.91.0.20/24")})
	if err != nil {
		t.Fatal(err)
	}
	c.Handle.Close()
	if err := Detach(a); err != nil {
		t.Fatalf("Detach after netns gone: %v", err)
	}
	// A path now naming another netns is left alone.
	other := nstest.NewNS(t)
	a2, err := AttachMacvlan("lan0", Endpoint{Container: "web", NetNS: other.Path,
		Addr: netip.MustParsePrefix("10.91.0.20/24")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Detach(a2) })
	stale := a2
	stale.NetNSID = "NS(0:0)"
	if err := Detach(stale); err != nil {
		t.Fatal(err)
	}
	h, _ := netlink.NewHandleAt(other.Handle)
	defer h.Close()
	if _, err := h.LinkByName("eth0"); err != nil {
		t.Fatal("Detach with a stale netns identity deleted the link")
	}
}

// addVeth makes a veth pair name/name+"p" through h (nil: the current
// netns), deleted when the test ends.
func addVeth(t *testing.T, h *netlink.Handle, name string) {
	t.Helper()
	if h == nil {
		h = &netlink.Handle{}
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, Flags: net.FlagUp}, PeerName: name + "p"}
	if err := h.LinkAdd(v); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	t.Cleanup(func() {
		if l, err := h.LinkByName(name); err == nil {
			_ = h.LinkDel(l)
		}
	})
}

func TestHostVethName(t *testing.T) {
	seen := map[string]string{}
	for _, c := range []string{"web", "cli", "a-very-long-container-name-indeed", "", "pv-avahi"} {
		n := HostVethName(c)
		if len(n) > 15 || !strings.HasPrefix(n, "pv") || n != HostVethName(c) {
			t.Fatalf("HostVethName(%q) = %q", c, n)
		}
		if o, dup := seen[n]; dup {
			t.Fatalf("%q and %q both map to %s", c, o, n)
		}
		seen[n] = c
	}
}

// BenchmarkAttachVeth measures network setup and teardown per container:
// AttachVeth (veth pair into a fresh netns, MAC, address, lo, default
// route), then Detach, either while the container's netns is alive or, as
// the pool actor does, after it is gone. Making the netns is not timed.
func BenchmarkAttachVeth(b *testing.B) {
	nstest.Isolated(b)
	ensureBridge(b, "pvbench0", "10.92.0.1/16")
	gw := netip.MustParseAddr("10.92.0.1")
	for _, exited := range []bool{false, true} {
		name := "live-netns"
		if exited {
			name = "exited-netns"
		}
		b.Run(name, func(b *testing.B) {
			var attach, detach time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				ns := newBenchNS(b)
				ip := netip.AddrFrom4([4]byte{10, 92, byte(1 + i/250%250), byte(2 + i%250)})
				b.StartTimer()
				t0 := time.Now()
				a, err := AttachVeth("pvbench0", Endpoint{Container: "bench" + strconv.Itoa(i), NetNS: ns.Path,
					Addr: netip.PrefixFrom(ip, 16), Gateway: gw, MAC: net.HardwareAddr{2, 0, 10, 92, byte(i >> 8), byte(i)}})
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if exited {
					ns.Handle.Close()
				}
				if err := Detach(a); err != nil {
					b.Fatal(err)
				}
				detach += time.Since(t1)
				attach += t1.Sub(t0)
				if !exited {
					ns.Handle.Close()
				}
			}
			b.ReportMetric(float64(attach.Microseconds())/float64(b.N), "attach-µs/op")
			b.ReportMetric(float64(detach.Microseconds())/float64(b.N), "detach-µs/op")
		})
	}
}

func newBenchNS(b *testing.B) nstest.NS {
	ns, err := nstest.MakeNS()
	if err != nil {
		b.Fatal(err)
	}
	return ns
}

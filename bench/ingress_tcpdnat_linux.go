package bench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/ingress"
	"github.com/pantavisor/pv/internal/nstest"
	"github.com/pantavisor/pv/network/link"
	"github.com/pantavisor/pv/network/nat"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/xconnect"
)

// The kernel path of tcp ingress: bulk throughput from a client in a
// second namespace (outside the device, across a veth) through the
// device's DNAT forward to a sink in a pool member's namespace (on a
// bridge), against the same client straight to the member's address,
// routed by the device: the same hops, the same sink, the same run; what
// differs is conntrack's rewrite. For scale, the same with the relay alone
// (a plane without a kernel path), as every outside client went before.
// The bench's own namespace is the device.
//
//	client ns eth0 10.98.0.2/24 ── bout0 10.98.0.1/24 [device] pvbench0 10.99.0.1/24 ── backend ns eth0 10.99.0.2/24

func init() {
	var runsK, runsR int
	needs := []string{"root", "pid1", "exec:iptables"}
	Register(Figure{
		Name:     "tcp ingress kernel path (DNAT): bulk throughput from a second namespace (1 GiB, veth)",
		Baseline: "client straight to the backend's pool address, routed by the device",
		Unit:     "MB/s", Goal: 0.9, Higher: true, Needs: needs,
		Run: func() (float64, float64, error) { return ingressOutside(&runsK, true) },
	})
	Register(Figure{
		Name:     "tcp ingress relay alone: bulk throughput from a second namespace (1 GiB, veth)",
		Baseline: "client straight to the backend's pool address, routed by the device",
		Unit:     "MB/s", Higher: true, Needs: needs,
		Run: func() (float64, float64, error) { return ingressOutside(&runsR, false) },
	})
}

const (
	dnatBridge  = "pvbench0"
	dnatOutside = "bout0"
	dnatSinkAt  = "10.99.0.2:9000"
)

// ingressOutside measures one run through the listener with the kernel
// path or without, against the client straight to the sink, in the order
// of abba: with a single push each, one after the other, a run's ratio
// ranged from 0.68 to 1.28 on this kind of VM.
func ingressOutside(runs *int, kernel bool) (ours, base float64, err error) {
	if err := loUp(); err != nil {
		return 0, 0, err
	}
	var undo []func() error
	defer func() {
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](); uerr != nil {
				err = errors.Join(err, uerr)
			}
		}
	}()
	if _, err := link.EnsureBridge(dnatBridge, netip.MustParsePrefix("10.99.0.1/24")); err != nil {
		return 0, 0, err
	}
	undo = append(undo, func() error { return link.RemoveBridge(dnatBridge) })
	backendNS, err := nstest.MakeNS()
	if err != nil {
		return 0, 0, err
	}
	undo = append(undo, backendNS.Handle.Close)
	a, err := link.AttachVeth(dnatBridge, link.Endpoint{Container: "bench", NetNS: backendNS.Path,
		Addr: netip.MustParsePrefix("10.99.0.2/24"), Gateway: netip.MustParseAddr("10.99.0.1")})
	if err != nil {
		return 0, 0, err
	}
	undo = append(undo, func() error { return link.Detach(a) })
	var ln net.Listener
	if err := nstest.Do(backendNS.Handle, func() (err error) { ln, err = net.Listen("tcp4", dnatSinkAt); return err }); err != nil {
		return 0, 0, err
	}
	undo = append(undo, func() error { ln.Close(); return nil })
	sinkOn(ln)

	clientNS, err := nstest.MakeNS()
	if err != nil {
		return 0, 0, err
	}
	undo = append(undo, clientNS.Handle.Close)
	if err := outsideLink(clientNS); err != nil {
		return 0, 0, err
	}
	undo = append(undo, func() error {
		if l, err := netlink.LinkByName(dnatOutside); err == nil {
			return netlink.LinkDel(l)
		}
		return nil
	})
	// Forwarding on, as a NAT pool turns it on (the forwards never do).
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		return 0, 0, err
	}

	listen, closeIngress, relayed, err := outsideIngress(kernel)
	if err != nil {
		return 0, 0, err
	}
	undo = append(undo, func() error { closeIngress(); return nil })

	dialFrom := func(addr string) func() (net.Conn, error) {
		return func() (c net.Conn, err error) {
			err = nstest.Do(clientNS.Handle, func() (err error) { c, err = net.Dial("tcp4", addr); return err })
			return c, err
		}
	}
	// Each side pushes twice per run (abbaRates).
	ours, base, err = abbaRates(runs, func() (float64, error) { return pushBulkDial(dialFrom(listen)) },
		func() (float64, error) { return pushBulkDial(dialFrom(dnatSinkAt)) })
	logf("run %d: through the listener %.0f MB/s, straight %.0f MB/s (kernel path %v)", *runs, ours, base, kernel)
	if err == nil && kernel && relayed() != 0 {
		err = fmt.Errorf("the relay carried %d connections: the kernel path was not taken", relayed())
	}
	return ours, base, err
}

// outsideLink makes the veth between the device and the client's
// namespace, the client routing everything through the device.
func outsideLink(client nstest.NS) error {
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: dnatOutside}, PeerName: "eth0",
		PeerNamespace: netlink.NsFd(int(client.Handle))}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("add veth: %w", err)
	}
	if err := netlink.AddrAdd(v, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 98, 0, 1), Mask: net.CIDRMask(24, 32)}}); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(v); err != nil {
		return err
	}
	h, err := netlink.NewHandleAt(client.Handle)
	if err != nil {
		return err
	}
	defer h.Close()
	peer, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := h.AddrAdd(peer, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 98, 0, 2), Mask: net.CIDRMask(24, 32)}}); err != nil {
		return err
	}
	if err := h.LinkSetUp(peer); err != nil {
		return err
	}
	return h.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: net.IPv4(10, 98, 0, 1)})
}

// outsideIngress puts a tcp ingress listener on 0.0.0.0 in front of the
// sink, as a provider on the bridge pool has it, with the device's kernel
// path if kernel (waiting for the forward to be installed), and returns
// the address an outside client dials and the count of connections the
// relay carried.
func outsideIngress(kernel bool) (string, func(), func() int64, error) {
	addr, err := freePort()
	if err != nil {
		return "", nil, nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	sinkPort, _ := strconv.Atoi(strings.Split(dnatSinkAt, ":")[1])
	plane := &ingress.Plane{Log: quietLog()}
	if kernel {
		plane.Kernel = nat.NewForwards(nat.DefaultBinary)
	}
	stats := &xconnect.Stats{}
	s, err := plane.Listen(actors.IngressListener{Type: "tcp", Addr: "0.0.0.0:" + port, Local: []string{dnatBridge},
		Rules: []actors.IngressRule{{IngressRule: state.IngressRule{Type: "tcp", Provider: "backend", Service: "bench"},
			Port: sinkPort, Bridge: dnatBridge}}}, []*xconnect.Stats{stats})
	if err != nil {
		return "", nil, nil, err
	}
	s.Backend(0, xconnect.Ends{ProviderPid: os.Getpid(), ProviderAddr: netip.MustParseAddr(strings.Split(dnatSinkAt, ":")[0])})
	for deadline := time.Now().Add(5 * time.Second); kernel && !strings.HasPrefix(s.Kernel(), "dnat to "); {
		if time.Now().After(deadline) {
			s.Close()
			return "", nil, nil, fmt.Errorf("kernel path not installed: %s", s.Kernel())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return "10.98.0.1:" + port, func() { s.Close() }, func() int64 { return stats.Snapshot().Connections }, nil
}

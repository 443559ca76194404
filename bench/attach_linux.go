package bench

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/pantavisor/pv/internal/nstest"
	"github.com/pantavisor/pv/network/link"
)

// attachName is what the attach figures time of this project: the call
// the engine makes between a container's creation and its exec when the
// container has a lease (engine plumb), alone.
const attachName = "network attach per container: link.AttachVeth into a fresh netns (veth pair, host end on the bridge and up, eth0 MAC + address + up, lo up, default route)"

// attachesPerRun is how many attaches each side of an attach figure times
// per run, after one that warms up; the run reports the median.
const attachesPerRun = 20

// attachContainer names the container of the attach figures; its veth's
// host end is link.HostVethName of it.
const attachContainer = "pvbench-attach"

// attacher gives the netns at nsPath its eth0 from the bench lease, on the
// bench pool's bridge, and returns when it is done.
type attacher func(nsPath string) error

// oursAttach is what the engine's plumb does for a bridge lease once it
// has the container's netns path.
func oursAttach(nsPath string) error {
	mac, err := net.ParseMAC(benchLease.MAC)
	if err != nil {
		return fmt.Errorf("bad MAC %q: %w", benchLease.MAC, err)
	}
	_, err = link.AttachVeth(benchLease.Link, link.Endpoint{
		Container: attachContainer, NetNS: nsPath,
		Addr: benchLease.Addr, Gateway: benchLease.Gateway, MAC: mac,
	})
	return err
}

// iprouteAttach does what oursAttach does with iproute2: the pair is
// created with its host end on the bridge and up and its peer, eth0 with
// the lease's MAC, in the netns; one ip inside the netns (nsenter) then
// adds the address, brings eth0 and lo up and adds the default route.
func iprouteAttach(nsPath string) error {
	host := link.HostVethName(attachContainer)
	add := exec.Command("ip", "link", "add", host, "master", benchLease.Link, "up",
		"type", "veth", "peer", "name", link.ContainerIfName, "address", benchLease.MAC, "netns", nsPath)
	if out, err := add.CombinedOutput(); err != nil {
		return fmt.Errorf("ip link add: %w: %s", err, strings.TrimSpace(string(out)))
	}
	in := exec.Command("nsenter", "--net="+nsPath, "ip", "-batch", "-")
	in.Stdin = strings.NewReader(fmt.Sprintf("address add %s dev %s\nlink set %[2]s up\nlink set lo up\nroute add default via %s dev %[2]s\n",
		benchLease.Addr, link.ContainerIfName, benchLease.Gateway))
	if out, err := in.CombinedOutput(); err != nil {
		return fmt.Errorf("nsenter ip -batch: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Runs of each attach figure so far: they decide which side goes first.
var attachStartRuns, attachIPRuns int

// attachVsIproute2 times attachesPerRun attaches of this project and as
// many of iproute2, in blocks whose order alternates from run to run with
// a pause between them, on one bench pool, and returns both medians in ms.
func attachVsIproute2() (ours, base float64, err error) {
	var o, b []time.Duration
	err = withPool(func() error {
		blocks := []func() (err error){
			func() (err error) { o, err = attachTimes("link.AttachVeth", oursAttach); return err },
			func() (err error) { b, err = attachTimes("iproute2", iprouteAttach); return err },
		}
		return alternate(&attachIPRuns, blocks...)
	})
	if err != nil {
		return 0, 0, err
	}
	return medianMs(o), medianMs(b), nil
}

// attachVsStart times attachesPerRun attaches of this project into fresh
// netns and, as the baseline, the Start calls without a lease of the
// network figures' container (its own netns, no network), and returns
// both medians in ms: the network's cost against the start it is part of.
func attachVsStart() (ours, base float64, err error) {
	var att []time.Duration
	var starts netResult
	sides := []func() error{
		func() error {
			return withPool(func() (err error) {
				att, err = attachTimes("link.AttachVeth", oursAttach)
				return err
			})
		},
		func() (err error) { starts, err = netStarts(false); return err },
	}
	if err := alternate(&attachStartRuns, sides...); err != nil {
		return 0, 0, err
	}
	return medianMs(att), starts.startWithout, nil
}

// attachTimes times attach into a fresh network namespace attachesPerRun
// times, after one warm-up, and returns the durations. The bench pool's
// bridge must be up.
//
// Each namespace is made before the clock starts, as a container's is by
// its creation, and holds only lo, down, as a container's does when the
// engine plumbs it. Each attach is checked (untimed) to have made what
// the lease asks for, so that a side doing less cannot look faster. The
// namespace is then closed and the host end waited for: the kernel
// destroys the pair with the namespace, as it does when a container's
// processes are gone, and the next attach does not find the previous one's
// teardown still running (a host end left behind is deleted).
func attachTimes(what string, attach attacher) ([]time.Duration, error) {
	host := link.HostVethName(attachContainer)
	var ds, gone []time.Duration
	for i := 0; i <= attachesPerRun; i++ {
		ns, err := nstest.MakeNS() // made on a thread of its own: the bench stays in its netns
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		err = attach(ns.Path)
		el := time.Since(t0)
		if err == nil {
			err = checkAttached(ns.Path, host)
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", what, err)
		}
		ns.Handle.Close()
		t1 := time.Now()
		if uerr := unplug(host); uerr != nil {
			err = errors.Join(err, fmt.Errorf("%s: %w", what, uerr))
		}
		if err != nil {
			return nil, err
		}
		if i > 0 {
			ds = append(ds, el)
			gone = append(gone, time.Since(t1))
		}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	logf("%s: attach median %.3f ms, min %.3f, max %.3f over %d; teardown after the netns closed (untimed) median %.2f ms",
		what, medianMs(ds), float64(s[0])/1e6, float64(s[len(s)-1])/1e6, len(ds), medianMs(gone))
	return ds, nil
}

// checkAttached checks what an attach made: the host end host is a veth
// on the bench bridge and up; in the netns at nsPath, eth0 has the lease's
// MAC and address and is up, lo is up, and the default route goes through
// the lease's gateway.
func checkAttached(nsPath, host string) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("check attach: "+format, args...)
	}
	br, err := netlink.LinkByName(benchLease.Link)
	if err != nil {
		return fail("bridge: %w", err)
	}
	hl, err := netlink.LinkByName(host)
	if err != nil {
		return fail("host end: %w", err)
	}
	if _, ok := hl.(*netlink.Veth); !ok || hl.Attrs().MasterIndex != br.Attrs().Index || hl.Attrs().Flags&net.FlagUp == 0 {
		return fail("host end %s: %s on master %d, flags %v; want an up veth on %s (%d)",
			host, hl.Type(), hl.Attrs().MasterIndex, hl.Attrs().Flags, benchLease.Link, br.Attrs().Index)
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fail("open netns: %w", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fail("netlink in netns: %w", err)
	}
	defer h.Close()
	eth, err := h.LinkByName(link.ContainerIfName)
	if err != nil {
		return fail("%s: %w", link.ContainerIfName, err)
	}
	if eth.Attrs().HardwareAddr.String() != benchLease.MAC || eth.Attrs().Flags&net.FlagUp == 0 {
		return fail("%s: MAC %s, flags %v; want %s, up", link.ContainerIfName, eth.Attrs().HardwareAddr, eth.Attrs().Flags, benchLease.MAC)
	}
	addrs, err := h.AddrList(eth, netlink.FAMILY_V4)
	if err != nil {
		return fail("addresses: %w", err)
	}
	if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IPNet.String() == benchLease.Addr.String() }) {
		return fail("%s has %v, not %s", link.ContainerIfName, addrs, benchLease.Addr)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fail("lo: %w", err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		return fail("lo is down")
	}
	routes, err := h.RouteList(eth, netlink.FAMILY_V4)
	if err != nil {
		return fail("routes: %w", err)
	}
	if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
		return (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.String() == benchLease.Gateway.String()
	}) {
		return fail("no default route via %s in %v", benchLease.Gateway, routes)
	}
	return nil
}

// unplug waits up to a second for the kernel to delete the veth whose
// host end is host, with the namespace its peer was in, then deletes it
// if it is still there.
func unplug(host string) error {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if _, err := netlink.LinkByName(host); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return link.Detach(link.Attachment{Kind: link.KindVeth, Container: attachContainer, HostLink: host})
}

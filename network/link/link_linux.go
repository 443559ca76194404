package link

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ContainerIfName is the name of a container's interface inside its netns.
const ContainerIfName = "eth0"

// Errors callers branch on.
var (
	// ErrNotBridge means a link with the bridge's name exists and is not a
	// bridge; it is left alone.
	ErrNotBridge = errors.New("not a bridge")
	// ErrInvalid means an argument (a name, an address) cannot be used.
	ErrInvalid = errors.New("invalid argument")
	// ErrLinkExists means a link that is not ours already has the name we need.
	ErrLinkExists = errors.New("link name taken")
)

// Kind is the type of a container's interface.
type Kind string

// The interface kinds.
const (
	KindVeth    Kind = "veth"
	KindMacvlan Kind = "macvlan"
)

// Bridge describes a pool bridge.
type Bridge struct {
	Name  string
	Index int
	// Created is set when EnsureBridge made the link rather than finding it.
	Created bool
	// Ours is set when the bridge carries bridgeAlias: this package
	// made it, in this run or an earlier one (a supervisor started again
	// finds the bridge its predecessor made, and only then may it take it
	// for its own).
	Ours bool
	// AddedAddr is set when EnsureBridge put the gateway address on a
	// bridge it did not create: RemoveAddr takes it away again.
	AddedAddr bool
}

// bridgeAlias marks the bridges EnsureBridge creates (IFLA_IFALIAS, kept
// by the kernel for the link's life): a supervisor that adopts a device
// tells them from a bridge of the host's of the same name, which it must
// never remove.
const bridgeAlias = "pantavisor pool bridge"

// Endpoint is what a container's interface must look like.
type Endpoint struct {
	// Container names the container; the veth's host end is derived from it.
	Container string
	// NetNS is the path of the container's network namespace, e.g.
	// /proc/<pid>/ns/net.
	NetNS string
	// Addr is the container's address with the pool's prefix length.
	Addr netip.Prefix
	// Gateway is the default route; the zero Addr adds no route.
	Gateway netip.Addr
	// MAC is the interface's address; nil lets the kernel choose.
	MAC net.HardwareAddr
}

// Attachment is what AttachVeth or AttachMacvlan made; Detach undoes it.
type Attachment struct {
	Kind      Kind
	Container string
	// HostLink is the host end of a veth pair ("" for a macvlan).
	HostLink string
	// Master is the bridge (veth) or the parent link (macvlan).
	Master string
	// NetNS is the container netns path and NetNSID its identity
	// (device:inode) when attached, so a reused path is recognised.
	NetNS   string
	NetNSID string
	// Index is the interface's index inside the container netns.
	Index int
	Addr  netip.Prefix
	MAC   net.HardwareAddr
}

// HostVethName returns the host-side veth name for a container: "pv"
// followed by 12 hex digits of the SHA-256 of the name (14 bytes, within
// the kernel's 15), the same for the same name on every call.
func HostVethName(container string) string {
	sum := sha256.Sum256([]byte(container))
	return "pv" + hex.EncodeToString(sum[:6])
}

// EnsureBridge makes sure a bridge called name exists, carries the gateway
// address gw (the gateway with the pool's prefix length; other addresses are
// left alone) and is up. An existing bridge is reused; an existing link of
// another type is an error wrapping ErrNotBridge and is not touched. A bridge
// it created is deleted again if a later step fails.
func EnsureBridge(name string, gw netip.Prefix) (Bridge, error) {
	fail := func(step string, err error) (Bridge, error) {
		return Bridge{}, fmt.Errorf("ensure bridge %s: %s: %w", name, step, err)
	}
	if err := checkName(name); err != nil {
		return fail("check name", err)
	}
	if !gw.IsValid() || !gw.Addr().Is4() {
		return fail("check gateway", fmt.Errorf("%v is not an IPv4 prefix: %w", gw, ErrInvalid))
	}
	created := true
	mac, err := bridgeMAC()
	if err != nil {
		return fail("make a MAC", err)
	}
	err = netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac}})
	if errors.Is(err, unix.EEXIST) {
		created = false
	} else if err != nil {
		return fail("add link", err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fail("find link", err)
	}
	undo := func() {
		if created {
			_ = netlink.LinkDel(l)
		}
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return fail("check type", fmt.Errorf("link is a %s: %w", l.Type(), ErrNotBridge))
	}
	if created {
		if err := netlink.LinkSetAlias(l, bridgeAlias); err != nil {
			undo()
			return fail("mark as pantavisor's", err)
		}
	}
	ours := created || l.Attrs().Alias == bridgeAlias
	had, err := hasAddr(l, gw)
	if err != nil {
		undo()
		return fail("list addresses", err)
	}
	if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: ipNet(gw)}); err != nil {
		undo()
		return fail("set address "+gw.String(), err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		undo()
		return fail("set up", err)
	}
	return Bridge{Name: name, Index: l.Attrs().Index, Created: created, Ours: ours, AddedAddr: !created && !had}, nil
}

// hasAddr says whether l has the address gw (with its prefix length).
func hasAddr(l netlink.Link, gw netip.Prefix) (bool, error) {
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == gw.Addr() && ones == gw.Bits() {
			return true, nil
		}
	}
	return false, nil
}

// RemoveAddr takes the gateway address gw off the bridge called name: a
// pool on a bridge of the host's put it there, and its teardown removes
// what it made. A bridge or an address already gone is no error.
func RemoveAddr(name string, gw netip.Prefix) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("remove %s from %s: %w", gw, name, err)
	}
	if err := netlink.AddrDel(l, &netlink.Addr{IPNet: ipNet(gw)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("remove %s from %s: %w", gw, name, err)
	}
	return nil
}

// bridgeMAC is a random locally administered unicast MAC for a bridge
// this package creates. A bridge whose address was never set takes the
// lowest of its ports' and changes it as ports come and go: the gateway's
// MAC then changed under every container of the pool whenever one of them
// stopped or restarted, and their neighbour entries, naming the old one,
// lost their traffic through the gateway until they expired (tens of
// seconds). An address set explicitly stays.
func bridgeMAC() (net.HardwareAddr, error) {
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return nil, err
	}
	mac[0] = mac[0]&^1 | 2 // unicast, locally administered
	return mac, nil
}

// RemoveBridge deletes the bridge called name and with it every address on
// it; veths still enslaved to it are released, not deleted, and their
// containers lose the pool's network. A missing bridge is not an error; a
// link of another type is (ErrNotBridge) and is not deleted.
func RemoveBridge(name string) error {
	l, err := netlink.LinkByName(name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove bridge %s: find link: %w", name, err)
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return fmt.Errorf("remove bridge %s: link is a %s: %w", name, l.Type(), ErrNotBridge)
	}
	if err := netlink.LinkDel(l); err != nil && !notFound(err) {
		return fmt.Errorf("remove bridge %s: delete link: %w", name, err)
	}
	return nil
}

// AttachVeth connects a container to bridge: it creates a veth pair whose
// host end (HostVethName) is enslaved to the bridge and up, and whose other
// end is created inside the container's netns as eth0 with ep's MAC, address
// and default route; lo is brought up there too. A leftover veth with the
// same host name (from an earlier incarnation of the container) is deleted
// first. On failure the pair is deleted.
func AttachVeth(bridge string, ep Endpoint) (Attachment, error) {
	host := HostVethName(ep.Container)
	fail := func(step string, err error) (Attachment, error) {
		return Attachment{}, fmt.Errorf("attach veth %s for %s: %s: %w", host, ep.Container, step, err)
	}
	if err := ep.check(); err != nil {
		return fail("check endpoint", err)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fail("find bridge "+bridge, err)
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return fail("check bridge "+bridge, fmt.Errorf("link is a %s: %w", br.Type(), ErrNotBridge))
	}
	if err := removeStaleVeth(host); err != nil {
		return fail("remove leftover", err)
	}
	ns, id, h, err := openNSHandle(ep.NetNS)
	if err != nil {
		return fail("open netns", err)
	}
	defer ns.Close()
	defer h.Close()

	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name:        host,
			MasterIndex: br.Attrs().Index,
			Flags:       net.FlagUp, // the host end is created up

		},
		PeerName:         ContainerIfName,
		PeerHardwareAddr: ep.MAC,
		PeerNamespace:    netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		// LinkAdd sets the master after creating the pair: the pair may exist.
		_ = delByName(host)
		return fail("add pair", err)
	}
	idx, err := configure(h, ep)
	if err != nil {
		_ = delByName(host)
		return fail("configure "+ContainerIfName+" in netns", err)
	}
	return Attachment{
		Kind: KindVeth, Container: ep.Container, HostLink: host, Master: bridge,
		NetNS: ep.NetNS, NetNSID: id, Index: idx, Addr: ep.Addr, MAC: ep.MAC,
	}, nil
}

// AttachMacvlan connects a container to the segment of parent: it creates a
// bridge-mode macvlan on parent directly inside the container's netns as
// eth0, with ep's MAC, address and default route, and brings lo up there.
// The container then answers ARP on parent's segment for its address. On
// failure the macvlan is deleted.
func AttachMacvlan(parent string, ep Endpoint) (Attachment, error) {
	fail := func(step string, err error) (Attachment, error) {
		return Attachment{}, fmt.Errorf("attach macvlan on %s for %s: %s: %w", parent, ep.Container, step, err)
	}
	if err := ep.check(); err != nil {
		return fail("check endpoint", err)
	}
	p, err := netlink.LinkByName(parent)
	if err != nil {
		return fail("find parent", err)
	}
	ns, id, h, err := openNSHandle(ep.NetNS)
	if err != nil {
		return fail("open netns", err)
	}
	defer ns.Close()
	defer h.Close()

	mv := &netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{
			Name:         ContainerIfName,
			ParentIndex:  p.Attrs().Index,
			HardwareAddr: ep.MAC,
			Namespace:    netlink.NsFd(int(ns)),
		},
		Mode: netlink.MACVLAN_MODE_BRIDGE,
	}
	// The library looks the new link up by name in the current netns
	// afterwards; mv.Index is therefore meaningless and not used.
	if err := netlink.LinkAdd(mv); err != nil {
		delInNS(h, ContainerIfName, "macvlan")
		return fail("add macvlan", err)
	}
	idx, err := configure(h, ep)
	if err != nil {
		delInNS(h, ContainerIfName, "macvlan")
		return fail("configure "+ContainerIfName+" in netns", err)
	}
	return Attachment{
		Kind: KindMacvlan, Container: ep.Container, Master: parent,
		NetNS: ep.NetNS, NetNSID: id, Index: idx, Addr: ep.Addr, MAC: ep.MAC,
	}, nil
}

// Detach deletes what an Attach made: a veth's host end (which deletes its
// peer in the container), or a macvlan inside the container netns. Links
// already gone, with their container's netns, are not an error; a netns path
// now naming another namespace (a reused pid) is left alone.
//
// Call it after the container's processes are gone: the kernel then destroys
// the container's links with its netns, asynchronously, and Detach is a
// lookup. Deleting a live veth blocks for the kernel's RCU grace periods,
// about 15-30 ms on the CI machine.
func Detach(a Attachment) error {
	switch a.Kind {
	case KindVeth:
		if err := delByName(a.HostLink); err != nil {
			return fmt.Errorf("detach veth %s for %s: %w", a.HostLink, a.Container, err)
		}
		return nil
	case KindMacvlan:
		if err := detachInNS(a); err != nil {
			return fmt.Errorf("detach macvlan for %s: %w", a.Container, err)
		}
		return nil
	}
	return fmt.Errorf("detach %s: kind %q: %w", a.Container, a.Kind, ErrInvalid)
}

func detachInNS(a Attachment) error {
	ns, id, err := openNS(a.NetNS)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open netns: %w", err)
	}
	defer ns.Close()
	if id != a.NetNSID {
		return nil
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink in netns: %w", err)
	}
	defer h.Close()
	l, err := h.LinkByIndex(a.Index)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find link %d: %w", a.Index, err)
	}
	if l.Type() != "macvlan" {
		return nil
	}
	if err := h.LinkDel(l); err != nil && !notFound(err) {
		return fmt.Errorf("delete link %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// configure sets eth0 up with ep's address and route inside the netns of h
// (its MAC was set at creation), and brings lo up. It returns eth0's index.
func configure(h *netlink.Handle, ep Endpoint) (int, error) {
	l, err := h.LinkByName(ContainerIfName)
	if err != nil {
		return 0, fmt.Errorf("find link: %w", err)
	}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(ep.Addr)}); err != nil {
		return 0, fmt.Errorf("add address %s: %w", ep.Addr, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return 0, fmt.Errorf("set up: %w", err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return 0, fmt.Errorf("find lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return 0, fmt.Errorf("set lo up: %w", err)
	}
	if ep.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: ep.Gateway.AsSlice()}
		if err := h.RouteAdd(r); err != nil {
			return 0, fmt.Errorf("add default route via %s: %w", ep.Gateway, err)
		}
	}
	return l.Attrs().Index, nil
}

func (ep Endpoint) check() error {
	switch {
	case ep.Container == "":
		return fmt.Errorf("no container name: %w", ErrInvalid)
	case ep.NetNS == "":
		return fmt.Errorf("no netns path: %w", ErrInvalid)
	case !ep.Addr.IsValid() || !ep.Addr.Addr().Is4():
		return fmt.Errorf("address %v is not an IPv4 prefix: %w", ep.Addr, ErrInvalid)
	case ep.Gateway.IsValid() && !ep.Addr.Masked().Contains(ep.Gateway):
		return fmt.Errorf("gateway %s outside %s: %w", ep.Gateway, ep.Addr.Masked(), ErrInvalid)
	case ep.MAC != nil && len(ep.MAC) != 6:
		return fmt.Errorf("mac %s is not an Ethernet address: %w", ep.MAC, ErrInvalid)
	}
	return nil
}

// removeStaleVeth deletes a veth called name left by an earlier attach; any
// other link with that name is an error.
func removeStaleVeth(name string) error {
	l, err := netlink.LinkByName(name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, ok := l.(*netlink.Veth); !ok {
		return fmt.Errorf("%s is a %s: %w", name, l.Type(), ErrLinkExists)
	}
	if err := netlink.LinkDel(l); err != nil && !notFound(err) {
		return err
	}
	return nil
}

// delByName deletes the veth called name; a missing link is fine.
func delByName(name string) error {
	l, err := netlink.LinkByName(name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find link: %w", err)
	}
	if _, ok := l.(*netlink.Veth); !ok {
		return fmt.Errorf("%s is a %s, not deleting it: %w", name, l.Type(), ErrLinkExists)
	}
	if err := netlink.LinkDel(l); err != nil && !notFound(err) {
		return fmt.Errorf("delete link: %w", err)
	}
	return nil
}

func delInNS(h *netlink.Handle, name, typ string) {
	if l, err := h.LinkByName(name); err == nil && l.Type() == typ {
		_ = h.LinkDel(l)
	}
}

func openNS(path string) (netns.NsHandle, string, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), "", err
	}
	return ns, ns.UniqueId(), nil
}

func notFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// checkName refuses what the kernel's dev_valid_name refuses, and a NUL
// byte, at which the kernel would end the name: the link made or found
// would be another's.
func checkName(name string) error {
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/: \t\n\v\f\r\x00") || name == "." || name == ".." {
		return fmt.Errorf("interface name %q: 1 to 15 bytes without '/', ':', white space or NUL: %w", name, ErrInvalid)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// openNSHandle opens a container's network namespace and a netlink handle
// inside it, so that its links are configured without moving any thread.
// The caller closes both.
func openNSHandle(path string) (netns.NsHandle, string, *netlink.Handle, error) {
	ns, id, err := openNS(path)
	if err != nil {
		return ns, "", nil, err
	}
	// Routing only: with no family named, netlink opens xfrm and
	// netfilter sockets too, which a device kernel without xfrm_user
	// refuses (EPROTONOSUPPORT) though nothing here needs them.
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return ns, "", nil, fmt.Errorf("open netlink in netns: %w", err)
	}
	return ns, id, h, nil
}

// Adopt describes the eth0 a previous supervisor of the device attached
// for a container that still runs (in its netns at nsPath), so that
// Detach removes it later: a veth on bridge master, or a macvlan on parent
// master. Nothing is changed.
func Adopt(kind Kind, container, master, nsPath string, addr netip.Prefix, mac net.HardwareAddr) (Attachment, error) {
	a := Attachment{Kind: kind, Container: container, Master: master, NetNS: nsPath, Addr: addr, MAC: mac}
	switch kind {
	case KindVeth:
		a.HostLink = HostVethName(container)
		if _, err := netlink.LinkByName(a.HostLink); err != nil {
			return Attachment{}, fmt.Errorf("adopt veth %s for %s: %w", a.HostLink, container, err)
		}
	case KindMacvlan:
		ns, id, h, err := openNSHandle(nsPath)
		if err != nil {
			return Attachment{}, fmt.Errorf("adopt macvlan for %s: %w", container, err)
		}
		defer ns.Close()
		defer h.Close()
		l, err := h.LinkByName(ContainerIfName)
		if err != nil {
			return Attachment{}, fmt.Errorf("adopt macvlan for %s: %w", container, err)
		}
		a.NetNSID, a.Index = id, l.Attrs().Index
	default:
		return Attachment{}, fmt.Errorf("adopt %s: kind %q: %w", container, kind, ErrInvalid)
	}
	return a, nil
}

// KindOf maps a pool type ("bridge" or "macvlan") to the kind of link a
// container on it gets.
func KindOf(poolType string) Kind {
	if poolType == "macvlan" {
		return KindMacvlan
	}
	return KindVeth
}

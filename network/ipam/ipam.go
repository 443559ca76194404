// Package ipam allocates IPv4 addresses from one pool's subnet to owners
// (containers). It is pure: no kernel, no I/O, no locking.
//
// Leases are sticky for the life of an Allocator: an owner gets the same
// address on every call until it is released. Network, broadcast and gateway
// addresses are never leased. Unlike upstream Pantavisor, whose cursor never
// wraps (a crash-looping container exhausts its pool), released addresses are
// reused: fresh addresses are handed out first, in ascending order, then the
// released ones, oldest release first, so an address just given up is the
// last to be taken again.
package ipam

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
)

// Errors callers branch on. Every error returned by this package wraps one
// of them.
var (
	// ErrPoolExhausted means every leasable address is held.
	ErrPoolExhausted = errors.New("pool exhausted")
	// ErrAddressInUse means another owner holds the requested address.
	ErrAddressInUse = errors.New("address in use")
	// ErrNotLeasable means the address is outside the subnet or is its
	// network, broadcast or gateway address.
	ErrNotLeasable = errors.New("address not leasable")
	// ErrInvalidPool means New was given a subnet or gateway it cannot use.
	ErrInvalidPool = errors.New("invalid pool")
	// ErrNoOwner means the owner name is empty.
	ErrNoOwner = errors.New("empty owner")
)

// Lease is one address held by one owner.
type Lease struct {
	Owner string
	Addr  netip.Addr
	// Static is set when the address came from Reserve (a static ip).
	Static bool
}

// held is the allocator's record of one lease, keyed by address offset.
type held struct {
	owner  string
	static bool
}

// Allocator hands out the addresses of one IPv4 subnet. It is not safe for
// concurrent use: one pool actor owns it.
type Allocator struct {
	subnet  netip.Prefix
	gateway netip.Addr
	base    uint32 // network address
	first   uint32 // lowest leasable offset (1)
	last    uint32 // highest leasable offset (broadcast-1)
	gwOff   uint32

	byOwner map[string]uint32
	byOff   map[uint32]held

	// cursor is the next offset never yet passed by the fresh scan; every
	// free offset below it is in the released queue.
	cursor uint32
	// released is a FIFO of offsets freed below the cursor; queued marks
	// them so each offset is queued at most once. Entries taken by Reserve
	// while queued are skipped when popped.
	released []uint32
	head     int
	queued   map[uint32]struct{}
}

// New returns an empty allocator for subnet (an IPv4 prefix of length 30 or
// less, without host bits) whose gateway is gw (inside the subnet, neither
// its network nor its broadcast address).
func New(subnet netip.Prefix, gw netip.Addr) (*Allocator, error) {
	switch {
	case !subnet.IsValid() || !subnet.Addr().Is4():
		return nil, fmt.Errorf("new pool %s: subnet must be IPv4: %w", subnet, ErrInvalidPool)
	case subnet.Bits() > 30:
		return nil, fmt.Errorf("new pool %s: subnet too small, /30 at most: %w", subnet, ErrInvalidPool)
	case subnet.Masked() != subnet:
		return nil, fmt.Errorf("new pool %s: host bits set: %w", subnet, ErrInvalidPool)
	case !gw.Is4() || !subnet.Contains(gw):
		return nil, fmt.Errorf("new pool %s: gateway %s outside the subnet: %w", subnet, gw, ErrInvalidPool)
	}
	base := u32(subnet.Addr())
	size := uint32(1) << (32 - subnet.Bits()) // fits: Bits() >= 1 unless /0
	if subnet.Bits() == 0 {
		size = 0 // 1<<32 wraps; last below handles it
	}
	a := &Allocator{
		subnet:  subnet,
		gateway: gw,
		base:    base,
		first:   1,
		last:    size - 2,
		gwOff:   u32(gw) - base,
		byOwner: map[string]uint32{},
		byOff:   map[uint32]held{},
		queued:  map[uint32]struct{}{},
	}
	if a.gwOff < a.first || a.gwOff > a.last {
		return nil, fmt.Errorf("new pool %s: gateway %s is the network or broadcast address: %w", subnet, gw, ErrInvalidPool)
	}
	a.cursor = a.first
	return a, nil
}

// Subnet returns the pool's subnet.
func (a *Allocator) Subnet() netip.Prefix { return a.subnet }

// Gateway returns the pool's gateway address.
func (a *Allocator) Gateway() netip.Addr { return a.gateway }

// Capacity returns how many addresses can be leased at once.
func (a *Allocator) Capacity() int { return int(a.last-a.first+1) - 1 }

// Len returns how many leases are live.
func (a *Allocator) Len() int { return len(a.byOwner) }

// Lookup returns owner's lease, if it has one.
func (a *Allocator) Lookup(owner string) (Lease, bool) {
	off, ok := a.byOwner[owner]
	if !ok {
		return Lease{}, false
	}
	return Lease{Owner: owner, Addr: a.addr(off), Static: a.byOff[off].static}, true
}

// Allocate returns owner's lease, leasing a free address first if it holds
// none. The address stays owner's until Release. It returns an error
// wrapping ErrPoolExhausted when every address is held.
func (a *Allocator) Allocate(owner string) (netip.Addr, error) {
	if owner == "" {
		return netip.Addr{}, fmt.Errorf("allocate: %w", ErrNoOwner)
	}
	if off, ok := a.byOwner[owner]; ok {
		return a.addr(off), nil
	}
	off, ok := a.next()
	if !ok {
		return netip.Addr{}, fmt.Errorf("allocate for %s in %s: %d addresses leased: %w",
			owner, a.subnet, len(a.byOwner), ErrPoolExhausted)
	}
	a.take(owner, off, false)
	return a.addr(off), nil
}

// Reserve leases ip, a static address, to owner. An address owner already
// holds (its lease from before a restart) does not block it: owner's
// previous lease, if it is another address, is released. It fails, naming
// the holder, when another owner holds ip, and when ip is outside the subnet
// or is its network, broadcast or gateway address.
func (a *Allocator) Reserve(owner string, ip netip.Addr) error {
	if owner == "" {
		return fmt.Errorf("reserve %s: %w", ip, ErrNoOwner)
	}
	off, err := a.offset(ip)
	if err != nil {
		return fmt.Errorf("reserve %s for %s: %w", ip, owner, err)
	}
	if h, ok := a.byOff[off]; ok {
		if h.owner != owner {
			return fmt.Errorf("reserve %s for %s: held by %s: %w", ip, owner, h.owner, ErrAddressInUse)
		}
		a.byOff[off] = held{owner: owner, static: true}
		return nil
	}
	a.Release(owner)
	a.take(owner, off, true)
	return nil
}

// Release frees owner's lease, if any; the address becomes leasable again.
func (a *Allocator) Release(owner string) {
	off, ok := a.byOwner[owner]
	if !ok {
		return
	}
	delete(a.byOwner, owner)
	delete(a.byOff, off)
	if off < a.cursor {
		if _, q := a.queued[off]; !q {
			a.queued[off] = struct{}{}
			a.released = append(a.released, off)
		}
	}
}

// Leases returns the live leases sorted by address.
func (a *Allocator) Leases() []Lease {
	out := make([]Lease, 0, len(a.byOwner))
	for off, h := range a.byOff {
		out = append(out, Lease{Owner: h.owner, Addr: a.addr(off), Static: h.static})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out
}

// MAC returns the MAC address upstream derives from an IPv4 address:
// 02:00 followed by the four octets (10.0.5.2 → 02:00:0a:00:05:02), a
// locally administered unicast address. It returns nil for a non-IPv4 ip.
func MAC(ip netip.Addr) net.HardwareAddr {
	if !ip.Is4() {
		return nil
	}
	b := ip.As4()
	return net.HardwareAddr{0x02, 0x00, b[0], b[1], b[2], b[3]}
}

// next finds a free offset: fresh ones above the cursor first, then the
// released queue. Each offset is passed by the cursor once and queued once
// per release, so this is O(1) amortised.
func (a *Allocator) next() (uint32, bool) {
	for a.cursor <= a.last {
		off := a.cursor
		a.cursor++
		if off == a.gwOff {
			continue
		}
		if _, taken := a.byOff[off]; !taken {
			return off, true
		}
	}
	for a.head < len(a.released) {
		off := a.released[a.head]
		a.head++
		delete(a.queued, off)
		if a.head > 1024 && a.head*2 > len(a.released) {
			a.released = append(a.released[:0], a.released[a.head:]...)
			a.head = 0
		}
		if _, taken := a.byOff[off]; !taken {
			return off, true
		}
	}
	return 0, false
}

func (a *Allocator) take(owner string, off uint32, static bool) {
	a.byOwner[owner] = off
	a.byOff[off] = held{owner: owner, static: static}
}

func (a *Allocator) offset(ip netip.Addr) (uint32, error) {
	if !ip.Is4() || !a.subnet.Contains(ip) {
		return 0, fmt.Errorf("outside %s: %w", a.subnet, ErrNotLeasable)
	}
	off := u32(ip) - a.base
	switch {
	case off < a.first:
		return 0, fmt.Errorf("network address of %s: %w", a.subnet, ErrNotLeasable)
	case off > a.last:
		return 0, fmt.Errorf("broadcast address of %s: %w", a.subnet, ErrNotLeasable)
	case off == a.gwOff:
		return 0, fmt.Errorf("gateway of %s: %w", a.subnet, ErrNotLeasable)
	}
	return off, nil
}

func (a *Allocator) addr(off uint32) netip.Addr {
	v := a.base + off
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func u32(ip netip.Addr) uint32 {
	b := ip.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

package messages

import "net/netip"

// LeaseRequest asks a pool for a container's address: its static ip when
// it has one, else the pool's choice. Leases are sticky: asking again
// returns the same address.
type LeaseRequest struct {
	Container string
	Static    netip.Addr
	MAC       string
}

// Lease answers LeaseRequest: everything needed to plumb the container's
// eth0. Err is set when no lease could be given.
type Lease struct {
	Pool string
	// Type is "bridge" or "macvlan"; Link is the bridge or the parent.
	Type    string
	Link    string
	Addr    netip.Prefix
	Gateway netip.Addr
	MAC     string
	Err     string
}

// LeaseRelease gives a container's address back to its pool.
type LeaseRelease struct {
	Container string
}

// StopPool asks a pool to remove its bridge and rules; it answers with
// PoolStopped.
type StopPool struct{}

// PoolStopped tells the revision a pool removed what it set up.
type PoolStopped struct {
	Name string
	Err  string
}

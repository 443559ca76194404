package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/pantavisor/pv/network/link"
	"github.com/pantavisor/pv/network/nat"
	"github.com/pantavisor/pv/state"
)

// Pools sets up IPAM pools on the device: the bridge with the gateway
// address, and NAT and isolation rules with iptables.
type Pools struct {
	// Iptables is the backend binary ("" = the system's iptables).
	Iptables string
	// Isolation drops forwarding between different pools' bridges.
	Isolation bool

	// backend is opened once (two runs of the binary) for every pool:
	// a supervisor re-adopting the device answers nothing until each
	// pool is taken over.
	backendMu sync.Mutex
	backend   *nat.Backend
}

// natBackend is the iptables backend, opened at the first call.
func (p *Pools) natBackend() (*nat.Backend, error) {
	p.backendMu.Lock()
	defer p.backendMu.Unlock()
	if p.backend == nil {
		b, err := nat.NewBackend(p.Iptables)
		if err != nil {
			return nil, err
		}
		p.backend = b
	}
	return p.backend, nil
}

// PoolSetup is what Setup made for one pool.
type PoolSetup struct {
	bridge  string
	created bool
	// gateway is the address this pool put on a bridge it did not
	// create, which its teardown takes off again (invalid when none).
	gateway netip.Prefix
	rules   *nat.Rules
	backend string
}

// Setup creates a bridge pool's bridge and its rules; a macvlan pool needs
// nothing up front (its parent must exist when a container starts). A
// failure undoes what was done.
func (p *Pools) Setup(pool state.Pool, peers []string) (*PoolSetup, error) {
	return p.setup(pool, peers, false)
}

// Adopt is Setup for a pool a previous supervisor of the device set up
// (it died; the pool's containers run on): the bridge and the rules that
// are there are taken as this pool's, what is missing is added, and
// Teardown removes them all.
func (p *Pools) Adopt(pool state.Pool, peers []string) (*PoolSetup, error) {
	return p.setup(pool, peers, true)
}

func (p *Pools) setup(pool state.Pool, peers []string, adopt bool) (*PoolSetup, error) {
	if pool.Type == state.PoolMacvlan {
		return &PoolSetup{}, nil
	}
	s := &PoolSetup{bridge: pool.Bridge}
	br, err := link.EnsureBridge(pool.Bridge, netip.PrefixFrom(pool.Gateway, pool.Subnet.Bits()))
	if err != nil {
		return nil, fmt.Errorf("set up pool %s: %w", pool.Name, err)
	}
	// Adopting, the bridge is this pool's only if pantavisor made it (an
	// earlier supervisor of this boot did): a host bridge of the same
	// name, which the first setup reused and left alone, would be removed
	// at the teardown, and with it the host's addresses and ports. Its
	// rules are taken on the same condition: on a host bridge, rules that
	// match the plan may be the host's, and leaving the pool's own
	// behind at a teardown is the lesser harm.
	s.created = br.Created || adopt && br.Ours
	adopt = adopt && br.Ours
	if br.AddedAddr {
		s.gateway = netip.PrefixFrom(pool.Gateway, pool.Subnet.Bits())
	}
	backend, err := p.natBackend()
	if err != nil {
		s.Teardown()
		return nil, fmt.Errorf("set up pool %s: %w", pool.Name, err)
	}
	s.backend = backend.String()
	rules, err := nat.Apply(backend, nat.Config{Pool: pool.Name, Bridge: pool.Bridge, Subnet: pool.Subnet,
		NAT: pool.NAT, Peers: peers, AllowInterPool: !p.Isolation, Adopt: adopt})
	if err != nil {
		s.Teardown()
		return nil, fmt.Errorf("set up pool %s: %w", pool.Name, err)
	}
	s.rules = rules
	return s, nil
}

// Teardown removes the rules this pool added, then its bridge if this pool
// created it.
func (s *PoolSetup) Teardown() error {
	var errs []error
	if s.rules != nil {
		if err := s.rules.Remove(); err != nil {
			errs = append(errs, err)
		}
		s.rules = nil
	}
	if s.created {
		if err := link.RemoveBridge(s.bridge); err != nil {
			errs = append(errs, err)
		}
		s.created = false
	} else if s.gateway.IsValid() {
		if err := link.RemoveAddr(s.bridge, s.gateway); err != nil {
			errs = append(errs, err)
		}
		s.gateway = netip.Prefix{}
	}
	return errors.Join(errs...)
}

// Describe names the bridge and the iptables backend.
func (s *PoolSetup) Describe() string {
	if s.bridge == "" {
		return "macvlan"
	}
	n := 0
	if s.rules != nil {
		n = len(s.rules.Added())
	}
	return fmt.Sprintf("bridge %s, %d rules, %s", s.bridge, n, s.backend)
}

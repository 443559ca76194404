package state

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/pantavisor/pv/network/ipam"
)

// validate checks the rules that span documents: references between
// containers, groups, pools, disks, services and ingress rules.
func (p *parser) validate() {
	p.validateNames()
	p.validateDisks()
	p.validateNetworks()
	p.validateServices()
	p.validateIngress()
	p.validateLinkListeners()
	p.validateOwners()
	p.validateDrivers()
}

// validateDrivers checks that required driver aliases exist in the BSP's
// bsp/drivers.json; optional ones may be missing by definition. In appengine
// mode there is no BSP to check against.
func (p *parser) validateDrivers() {
	if p.opt.AppEngine {
		return
	}
	aliases := p.st.Drivers.Aliases()
	for _, c := range p.st.Containers {
		for i, d := range c.Drivers.Required {
			if !aliases[d] {
				p.errorf(c.Name+"/run.json", indexPath("drivers.required", i), "unknown driver alias %q: bsp/drivers.json does not define it", d)
			}
		}
	}
}

// segmentProblem says why name cannot be one path segment, or "". Storage,
// volume and disk names become directory names under the device storage:
// a name with a slash or a dot segment would climb out of it.
func segmentProblem(name string) string {
	switch {
	case name == "":
		return "is empty"
	case name == "." || name == "..":
		return fmt.Sprintf("%q is a dot segment", name)
	case strings.ContainsRune(name, '/'):
		return fmt.Sprintf("%q contains a slash", name)
	case strings.ContainsRune(name, 0):
		return fmt.Sprintf("%q contains a NUL byte", name)
	case len(name) > maxNameLen:
		return fmt.Sprintf("is %d bytes, longer than a file name (%d)", len(name), maxNameLen)
	}
	return ""
}

// validateNames refuses storage, volume and disk names that are not one
// path segment, naming the key.
func (p *parser) validateNames() {
	file := "device.json"
	if !p.st.HasDeviceJSON {
		file = "disks.json"
	}
	for i, d := range p.st.Disks {
		if d.Name == "" {
			continue // refused where the disk is read: "every disk needs a name"
		}
		if why := segmentProblem(d.Name); why != "" {
			p.errorf(file, joinPath(p.diskAt[i], "name"), "disk name %s: it must be a single path segment", why)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.st.Volumes)) {
		if why := segmentProblem(name); why != "" {
			p.errorf("device.json", "volumes."+name, "volume name %s: it must be a single path segment", why)
		}
	}
	for _, c := range p.st.Containers {
		for _, v := range slices.Sorted(maps.Keys(c.Storage)) {
			if why := segmentProblem(v); why != "" {
				p.errorf(c.Name+"/run.json", "storage."+v, "storage name %s: it must be a single path segment", why)
			}
		}
	}
}

func (p *parser) validateDisks() {
	file := "device.json"
	if !p.st.HasDeviceJSON {
		file = "disks.json"
	}
	names := map[string]bool{}
	defaults := 0
	for i, d := range p.st.Disks {
		if d.Name != "" && names[d.Name] {
			p.errorf(file, joinPath(p.diskAt[i], "name"), "duplicate disk %q", d.Name)
		}
		names[d.Name] = true
		if d.Default {
			defaults++
			if defaults == 2 {
				p.errorf(file, joinPath(p.diskAt[i], "default"), "more than one disk is the default")
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.st.Volumes)) {
		if d := p.st.Volumes[name].Disk; d != "" && !names[d] {
			p.errorf("device.json", "volumes."+name+".disk", "unknown disk %q", d)
		}
	}
	for _, c := range p.st.Containers {
		for _, v := range slices.Sorted(maps.Keys(c.Storage)) {
			if d := c.Storage[v].Disk; d != "" && !names[d] {
				p.errorf(c.Name+"/run.json", "storage."+v+".disk", "unknown disk %q", d)
			}
		}
	}
}

func (p *parser) validateNetworks() {
	type holder struct{ container, key string }
	ips := map[netip.Addr]holder{}
	macs := map[string]holder{}
	// A container with a static ip and no mac gets the MAC derived from
	// its ip (actors/pool lease → ipam.MAC): a static mac equal to it is a
	// duplicate on the segment as much as two equal static ones. Of an ip
	// two containers claim, only that error is reported.
	ipClaims := map[netip.Addr]int{}
	for _, c := range p.st.Containers {
		if n := c.Network; n != nil && n.Mode == NetPool && n.IP.IsValid() {
			ipClaims[n.IP]++
		}
	}
	for _, c := range p.st.Containers {
		if n := c.Network; n != nil && n.Mode == NetPool && n.MAC == "" && n.IP.IsValid() && ipClaims[n.IP] == 1 {
			macs[ipam.MAC(n.IP).String()] = holder{c.Name, "network." + n.ipKey}
		}
	}
	for _, c := range p.st.Containers {
		n := c.Network
		if n == nil || n.Mode != NetPool || n.Pool == "" {
			continue
		}
		file := c.Name + "/run.json"
		pool := p.pool(n.Pool)
		if pool == nil && p.deviceBroken {
			continue // device.json itself is the error to fix
		}
		if pool == nil {
			p.errorf(file, "network.pool", "unknown pool %q%s", n.Pool, p.poolHint())
			continue
		}
		ipAt := "network." + n.ipKey
		if n.IP.IsValid() && pool.Subnet.IsValid() {
			switch {
			case !pool.Subnet.Contains(n.IP):
				p.errorf(file, ipAt, "%s is outside pool %s (%s)", n.IP, pool.Name, pool.Subnet)
			case n.IP == pool.Subnet.Addr():
				p.errorf(file, ipAt, "%s is the network address of pool %s", n.IP, pool.Name)
			case n.IP == Broadcast(pool.Subnet):
				p.errorf(file, ipAt, "%s is the broadcast address of pool %s", n.IP, pool.Name)
			case n.IP == pool.Gateway:
				p.errorf(file, ipAt, "%s is the gateway of pool %s", n.IP, pool.Name)
			default:
				if h, taken := ips[n.IP]; taken {
					p.errorf(file, ipAt, "%s is already the static address of container %s", n.IP, h.container)
				} else {
					ips[n.IP] = holder{c.Name, "ip"}
				}
			}
		}
		if n.MAC != "" {
			if h, taken := macs[n.MAC]; taken {
				derived := ""
				if h.key != "mac" {
					derived = fmt.Sprintf(" (derived from its %s %s)", h.key, p.container(h.container).Network.IP)
				}
				p.errorf(file, "network.mac", "%s is already the MAC address of container %s%s", n.MAC, h.container, derived)
			} else {
				macs[n.MAC] = holder{c.Name, "mac"}
			}
		}
	}
	// Two pools on one bridge would share leases' L2 segment but not their
	// allocator: addresses could collide.
	bridges := map[string]string{}
	for _, pool := range p.st.Pools {
		if pool.Type != PoolBridge || pool.Bridge == "" {
			continue
		}
		if other, dup := bridges[pool.Bridge]; dup {
			p.errorf("device.json", "network.pools."+pool.Name+".bridge", "bridge %q is already used by pool %s", pool.Bridge, other)
		}
		bridges[pool.Bridge] = pool.Name
	}
	// One error per pool, naming the first it overlaps: every pair
	// reported was n²/2 problems for n pools on one subnet, gigabytes
	// from a state of a few hundred kilobytes.
	subnets := make([]netip.Prefix, len(p.st.Pools))
	for i, pool := range p.st.Pools {
		subnets[i] = pool.Subnet
	}
	for j, i := range firstOverlaps(subnets) {
		if i >= 0 {
			a, b := p.st.Pools[i], p.st.Pools[j]
			p.errorf("device.json", "network.pools."+b.Name+".subnet", "%s overlaps pool %s (%s)", b.Subnet, a.Name, a.Subnet)
		}
	}
}

func (p *parser) poolHint() string {
	if len(p.st.Pools) == 0 {
		return ": device.json declares no network.pools"
	}
	names := make([]string, len(p.st.Pools))
	for i, pl := range p.st.Pools {
		names[i] = pl.Name
	}
	return " (pools: " + strings.Join(names, ", ") + ")"
}

// validateServices checks that every required service is exported by some
// container with the same name and type (upstream matches by name only and
// then reboot-loops when it is missing), that a named provider exists, and
// that the consumer end of every link that will be made can be set up.
func (p *parser) validateServices() {
	for _, c := range p.st.Containers {
		file := c.Name + "/run.json"
		linked := map[string]bool{} // service names that have their link already
		check := func(list []ServiceRequirement, key string, required bool) {
			for i, r := range list {
				at := p.reqAt[c.Name+"/"+key][i]
				if linked[r.Name] {
					continue // no link of its own: reported as a duplicate
				}
				linked[r.Name] = true
				if r.Provider != "" {
					prov := p.container(r.Provider)
					if prov == nil {
						p.errorf(file, joinPath(at, "provider"), "unknown container %q", r.Provider)
						continue
					}
					e := p.export(prov, r.Name)
					switch {
					case e == nil:
						if required {
							p.errorf(file, at, "container %s exports no service %q", r.Provider, r.Name)
						}
					case !typesMatch(r.Type, e.Type):
						if required {
							p.errorf(file, at, "container %s exports %q as type %s, not %s", r.Provider, r.Name, e.Type, r.Type)
						}
					default:
						p.checkConsumerEnd(file, at, c, r, e)
					}
					continue
				}
				if r.Name == "" {
					continue
				}
				found, wrong := p.provider(r.Name, r.Type)
				wrongType := ""
				if wrong != nil {
					wrongType = fmt.Sprintf(" (%s exports it as type %s)", wrong.container.Name, wrong.export.Type)
				}
				switch {
				case found != nil:
					p.checkConsumerEnd(file, at, c, r, found)
				case required:
					typ := ""
					if r.Type != "" {
						typ = " of type " + r.Type
					}
					p.errorf(file, at, "required service %q%s is exported by no container%s", r.Name, typ, wrongType)
				}
			}
		}
		check(c.Requires, "required", true)
		check(c.Optional, "optional", false)
	}
}

// typesMatch says whether a requirement of type want is answered by an
// export of type got; an empty type (none given, or an unknown one already
// reported) matches any, as xconnect.Graph resolves links.
func typesMatch(want, got string) bool {
	return want == "" || got == "" || want == got
}

// ingressBackends lists the export types an ingress rule of each type can
// forward to.
var ingressBackends = map[string]map[string]bool{
	"tcp":  {"tcp": true, "unix": true},
	"http": {"http": true, "rest": true, "tcp": true, "unix": true},
}

func (p *parser) validateIngress() {
	claims := newListenIndex()
	names := map[string]int{}
	for i, r := range p.st.Ingress {
		at := p.ingressAt[i]
		if r.Name != "" {
			if j, dup := names[r.Name]; dup {
				p.errorf("device.json", joinPath(at, "name"), "duplicate ingress name %q: %s has it too", r.Name, p.ingressAt[j])
			}
			names[r.Name] = i
		}
		if r.Provider != "" {
			prov := p.container(r.Provider)
			switch {
			case prov == nil:
				p.errorf("device.json", joinPath(at, "provider"), "unknown container %q", r.Provider)
			case r.Service != "":
				e := p.export(prov, r.Service)
				switch {
				case e == nil:
					p.errorf("device.json", joinPath(at, "service"), "container %s exports no service %q", r.Provider, r.Service)
				case ingressBackends[r.Type] != nil && !ingressBackends[r.Type][e.Type]:
					p.errorf("device.json", joinPath(at, "service"), "a %s ingress cannot forward to %s's %s service %q", r.Type, r.Provider, e.Type, r.Service)
				}
			}
		}
		if !r.Addr.IsValid() {
			continue
		}
		// One HTTP listener routes several prefixes: an http rule
		// collides with another at its address only on the same one.
		if j := claims.collision(r); j >= 0 {
			p.errorf("device.json", joinPath(at, "external"), "%s collides with %s (%s)", r.External, p.ingressAt[j], p.st.Ingress[j].External)
		}
		claims.addRule(r, i)
	}
	p.ingressListeners = claims
}

// overlaps reports whether two listen addresses would compete for one port:
// the same port and the same address, or either is the wildcard.
func overlaps(a, b netip.AddrPort) bool {
	if a.Port() != b.Port() {
		return false
	}
	return a.Addr() == b.Addr() || a.Addr().IsUnspecified() || b.Addr().IsUnspecified()
}

// validateOwners warns about objects filed under a container that does not
// exist: upstream quietly makes them part of the BSP, which forces reboots.
func (p *parser) validateOwners() {
	seen := map[string]bool{}
	for _, key := range slices.Sorted(maps.Keys(p.st.Objects)) {
		p.checkOwner(key, seen)
	}
	for _, key := range slices.Sorted(maps.Keys(p.st.JSONs)) {
		p.checkOwner(key, seen)
	}
}

func (p *parser) checkOwner(key string, seen map[string]bool) {
	name := owner(key)
	if !strings.HasPrefix(key, "_config/") || name == "" || p.container(name) != nil || seen[name] {
		return
	}
	seen[name] = true
	p.warnf(key, "", "no container %q: its _config files belong to the BSP", name)
}

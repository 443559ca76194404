package state

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
)

// readDevice reads device.json, or the legacy groups.json/disks.json when
// there is no device.json, or falls back to the default groups.
func (p *parser) readDevice() {
	if raw, ok := p.docs["device.json"]; ok {
		p.st.HasDeviceJSON = true
		for _, legacy := range []string{"groups.json", "disks.json"} {
			if _, ok := p.docs[legacy]; ok {
				p.warnf(legacy, "", "ignored: device.json takes precedence")
			}
		}
		p.readDeviceJSON(raw)
		return
	}
	if raw, ok := p.docs["disks.json"]; ok {
		p.st.Disks = p.readDisks("disks.json", "", raw)
	}
	if raw, ok := p.docs["groups.json"]; ok {
		p.st.Groups = p.readGroups("groups.json", "", raw)
		return
	}
	p.st.Groups = DefaultGroupList()
	p.st.DefaultGroups = true
}

func (p *parser) readDeviceJSON(raw json.RawMessage) {
	const file = "device.json"
	o := newObject(&p.c, file, "", raw)
	if o == nil {
		p.deviceBroken = true
		return
	}
	if g, ok := o.raw("groups"); ok {
		p.st.Groups = p.readGroups(file, "groups", g)
	} else {
		// Upstream silently drops disks, volumes, network and ingress here
		// and then fails every container at run time; say so up front.
		p.errorf(file, "groups", "missing: device.json must list the container groups")
	}
	if d, ok := o.raw("disks"); ok {
		p.st.Disks = p.readDisks(file, "disks", d)
	}
	if d, ok := o.raw("disks_v2"); ok {
		p.st.Disks = append(p.st.Disks, p.readDisks(file, "disks_v2", d)...)
	}
	if v, ok := o.child("volumes"); ok {
		p.readVolumes(v)
	}
	if n, ok := o.child("network"); ok {
		if pools, ok := n.child("pools"); ok {
			p.readPools(pools)
		}
		n.finish()
	}
	if items, ok := o.array("ingress"); ok {
		p.readIngress(items)
	}
	o.has("remount") // consumed by the remount tool, not by pantavisor
	o.finish()
}

var validGoals = map[string]Goal{"MOUNTED": GoalMounted, "STARTED": GoalStarted, "READY": GoalReady}
var validRestart = map[string]RestartPolicy{"system": RestartSystem, "container": RestartContainer}

func (p *parser) readGroups(file, path string, raw json.RawMessage) []Group {
	var items []json.RawMessage
	items, err := splitArray(raw)
	if kind(raw) != '[' || err != nil {
		p.errorf(file, path, "must be an array of groups, got %s", describe(raw))
		return nil
	}
	if len(items) == 0 {
		p.errorf(file, path, "must list at least one group")
	}
	seen := map[string]bool{}
	var groups []Group
	for i, it := range items {
		at := itemPath(path, i, peekName(it, "name"))
		o := newObject(&p.c, file, at, it)
		if o == nil {
			continue
		}
		g := Group{StatusGoal: GoalStarted, RestartPolicy: RestartContainer, Timeout: p.opt.GroupTimeout, TimeoutUnset: true}
		if g.Timeout <= 0 {
			g.Timeout = DefaultGroupTimeout
		}
		name, ok := o.str("name")
		switch {
		case !ok && !o.has("name"):
			p.errorf(file, joinPath(at, "name"), "missing: every group needs a name")
		case ok && name == "":
			p.errorf(file, joinPath(at, "name"), "must not be empty")
		case ok && seen[name]:
			p.errorf(file, joinPath(at, "name"), "duplicate group %q", name)
		}
		seen[name] = true
		g.Name = name
		g.Description, _ = o.str("description")
		if s, ok := o.str("status_goal"); ok {
			if goal, valid := validGoals[s]; valid {
				g.StatusGoal = goal
			} else {
				p.errorf(file, joinPath(at, "status_goal"), "must be MOUNTED, STARTED or READY, got %q", s)
			}
		}
		if s, ok := o.str("restart_policy"); ok {
			if rp, valid := validRestart[s]; valid {
				g.RestartPolicy = rp
			} else {
				p.errorf(file, joinPath(at, "restart_policy"), "must be system or container, got %q", s)
			}
		}
		if n, ok := o.integer("timeout"); ok {
			if n < 0 {
				p.errorf(file, joinPath(at, "timeout"), "must be >= 0, got %d", n)
			} else {
				g.Timeout, g.TimeoutUnset = int(min(n, 1<<31-1)), false
			}
		}
		o.finish()
		groups = append(groups, g)
	}
	return groups
}

var validDiskTypes = map[string]bool{
	"directory": true, "dm-crypt-versatile": true, "dm-crypt-caam": true,
	"dm-crypt-dcp": true, "swap-disk": true, "volume-disk": true,
}
var validDiskFormats = map[string]bool{"ext4": true, "ext3": true, "swap": true}

func (p *parser) readDisks(file, path string, raw json.RawMessage) []Disk {
	var items []json.RawMessage
	items, err := splitArray(raw)
	if kind(raw) != '[' || err != nil {
		p.errorf(file, path, "must be an array of disks, got %s", describe(raw))
		return nil
	}
	var disks []Disk
	for i, it := range items {
		at := itemPath(path, i, peekName(it, "name"))
		o := newObject(&p.c, file, at, it)
		if o == nil {
			continue
		}
		var d Disk
		var ok bool
		if d.Name, ok = o.str("name"); !ok || d.Name == "" {
			p.errorf(file, joinPath(at, "name"), "missing: every disk needs a name")
		}
		d.Path, _ = o.str("path")
		d.Type, ok = o.str("type")
		if !ok {
			p.errorf(file, joinPath(at, "type"), "missing: one of directory, dm-crypt-versatile, dm-crypt-caam, dm-crypt-dcp, swap-disk, volume-disk")
		} else if !validDiskTypes[d.Type] {
			p.errorf(file, joinPath(at, "type"), "unknown disk type %q", d.Type)
		}
		if d.Format, ok = o.str("format"); ok && !validDiskFormats[d.Format] {
			p.errorf(file, joinPath(at, "format"), "must be ext4, ext3 or swap, got %q", d.Format)
		}
		if (d.Type == "swap-disk" || d.Type == "volume-disk") && d.Format == "" {
			p.errorf(file, joinPath(at, "format"), "missing: required for a %s", d.Type)
		}
		d.MountTarget, _ = o.str("mount_target")
		d.MountOptions, _ = o.str("mount_options")
		d.FormatOptions, _ = o.str("format_options")
		d.Provision, _ = o.str("provision")
		d.ProvisionOptions, _ = o.str("provision_options")
		d.UUID, _ = o.str("uuid")
		if s, ok := o.str("default"); ok {
			d.Default = s == "yes"
		}
		o.finish()
		disks = append(disks, d)
		p.diskAt = append(p.diskAt, at)
	}
	return disks
}

var validPersistence = map[string]Persistence{
	"boot": PersistBoot, "revision": PersistRevision, "permanent": PersistPermanent,
}

// readVolume reads {persistence, disk}; used for device.json volumes and
// run.json storage entries.
func (p *parser) readVolume(o *object) Volume {
	v := Volume{Persistence: PersistBoot}
	if s, ok := o.str("persistence"); ok {
		switch pe, valid := validPersistence[s]; {
		case valid:
			v.Persistence = pe
		case s == "built-in":
			// pvr's template writes it for an entry without persistence;
			// upstream warns and keeps the layer for the boot only.
			p.warnf(o.file, o.at("persistence"), "%q is pvr's placeholder: treated as boot", s)
		default:
			p.errorf(o.file, o.at("persistence"), "must be permanent, revision or boot, got %q", s)
		}
	}
	v.Disk, _ = o.str("disk")
	o.finish()
	return v
}

func (p *parser) readVolumes(o *object) {
	for _, name := range o.keys() {
		raw, _ := o.raw(name)
		if v := newObject(&p.c, o.file, o.at(name), raw); v != nil {
			p.st.Volumes[name] = p.readVolume(v)
		}
	}
}

func (p *parser) readPools(o *object) {
	for _, name := range o.keys() {
		raw, _ := o.raw(name)
		po := newObject(&p.c, o.file, o.at(name), raw)
		if po == nil {
			continue
		}
		pool := Pool{Name: name, Type: PoolBridge}
		if t, ok := po.str("type"); ok {
			switch PoolType(t) {
			case PoolBridge, PoolMacvlan:
				pool.Type = PoolType(t)
			default:
				p.errorf(po.file, po.at("type"), "must be bridge or macvlan, got %q", t)
				pool.Type = ""
			}
		}
		pool.Bridge, _ = po.str("bridge")
		pool.Parent, _ = po.str("parent")
		switch {
		case pool.Type == "":
			// unknown type, reported above; its other keys cannot be judged
		case pool.Type == PoolBridge:
			if pool.Bridge == "" {
				p.errorf(po.file, po.at("bridge"), "missing: a bridge pool names its bridge")
			} else if msg := checkIfName(pool.Bridge); msg != "" {
				p.errorf(po.file, po.at("bridge"), "%s", msg)
			}
			if po.has("parent") {
				p.warnf(po.file, po.at("parent"), "ignored for a bridge pool")
			}
		case pool.Type == PoolMacvlan:
			if pool.Parent == "" {
				p.errorf(po.file, po.at("parent"), "missing: a macvlan pool names its parent interface")
			} else if msg := checkIfName(pool.Parent); msg != "" {
				p.errorf(po.file, po.at("parent"), "%s", msg)
			}
		}
		subnetOK := false
		if s, ok := po.str("subnet"); ok {
			pfx, err := netip.ParsePrefix(s)
			switch {
			case err != nil || !pfx.Addr().Is4():
				p.errorf(po.file, po.at("subnet"), "must be an IPv4 CIDR such as 10.0.5.0/24, got %q", s)
			case pfx.Bits() > 30:
				p.errorf(po.file, po.at("subnet"), "%s is too small: a pool needs a gateway and at least one address (/30 at most)", s)
			case pfx.Masked() != pfx:
				p.errorf(po.file, po.at("subnet"), "%s has host bits set; did you mean %s?", s, pfx.Masked())
			default:
				pool.Subnet = pfx
				subnetOK = true
			}
		} else if !po.has("subnet") {
			p.errorf(po.file, po.at("subnet"), "missing: every pool needs an IPv4 subnet")
		}
		if s, ok := po.str("gateway"); ok {
			gw, err := netip.ParseAddr(s)
			switch {
			case err != nil || !gw.Is4():
				p.errorf(po.file, po.at("gateway"), "must be an IPv4 address, got %q", s)
			case subnetOK && !pool.Subnet.Contains(gw):
				p.errorf(po.file, po.at("gateway"), "%s is outside the pool's subnet %s", s, pool.Subnet)
			case subnetOK && (gw == pool.Subnet.Addr() || gw == Broadcast(pool.Subnet)):
				p.errorf(po.file, po.at("gateway"), "%s is the network or broadcast address of %s", s, pool.Subnet)
			default:
				pool.Gateway = gw
			}
		} else if !po.has("gateway") {
			p.errorf(po.file, po.at("gateway"), "missing: every pool needs a gateway address")
		}
		pool.NAT, _ = po.boolean("nat")
		po.finish()
		p.st.Pools = append(p.st.Pools, pool) // o.keys() is sorted, so Pools is too
	}
}

// Broadcast returns the last address of an IPv4 prefix.
func Broadcast(pfx netip.Prefix) netip.Addr {
	a := pfx.Masked().Addr().As4()
	host := uint32(1)<<(32-pfx.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// checkIfName returns why s cannot name a pool's bridge or parent, or "".
// The kernel refuses what dev_valid_name refuses (longer than 15 bytes,
// "." and "..", a '/', a ':' or white space), and ends a name at a NUL
// byte, which would make two names that validation tells apart one
// interface. The bridge's name also goes into iptables rules (-i, -o),
// where a final '+' is a wildcard and a lone "!" a negation: "eth+" would
// make the pool's ACCEPT rules match every eth interface of the host.
func checkIfName(s string) string {
	q := strconv.Quote(s)
	switch {
	case len(s) > 15:
		return "interface name " + q + " is longer than 15 bytes"
	case s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n\v\f\r\x00"):
		return "interface name " + q + " is not valid: the kernel refuses '/', ':', white space, \".\" and \"..\", and ends a name at a NUL byte"
	case strings.HasSuffix(s, "+"):
		return "interface name " + q + " ends in '+', which iptables reads as a wildcard: the pool's rules would match every interface whose name starts with " + strconv.Quote(strings.TrimSuffix(s, "+"))
	case s == "!":
		return "interface name \"!\" is iptables' negation, not a name"
	}
	return ""
}

func (p *parser) readIngress(items []json.RawMessage) {
	const file = "device.json"
	for i, it := range items {
		at := itemPath("ingress", i, peekName(it, "name", "service"))
		o := newObject(&p.c, file, at, it)
		if o == nil {
			continue
		}
		r := IngressRule{}
		r.Name, _ = o.str("name")
		r.Provider, _ = o.str("provider")
		r.Service, _ = o.str("service")
		if r.Provider == "" {
			p.errorf(file, joinPath(at, "provider"), "missing: the container that provides the service")
		}
		if r.Service == "" {
			p.errorf(file, joinPath(at, "service"), "missing: the service name in the provider's services.json")
		}
		r.Type, _ = o.str("type")
		if r.Type != "tcp" && r.Type != "http" {
			p.errorf(file, joinPath(at, "type"), "must be tcp or http, got %q", r.Type)
		}
		var ok bool
		if r.External, ok = o.str("external"); !ok {
			p.errorf(file, joinPath(at, "external"), "missing: the address to listen on, e.g. \":8080\"")
		} else if r.Type == "tcp" || r.Type == "http" {
			addr, prefix, msg := parseExternal(r.External, r.Type == "http")
			if msg != "" {
				p.errorf(file, joinPath(at, "external"), "%s", msg)
			}
			r.Addr, r.Prefix = addr, prefix
		}
		o.finish()
		p.st.Ingress = append(p.st.Ingress, r)
		p.ingressAt = append(p.ingressAt, at)
	}
}

// parseExternal reads "IP:PORT", ":PORT" and, for http, an optional
// "/prefix" after the port, returned without a trailing slash. An empty
// host means every address.
func parseExternal(s string, http bool) (netip.AddrPort, string, string) {
	hostport, prefix := s, ""
	if http {
		if i := strings.IndexByte(s, '/'); i >= 0 {
			hostport, prefix = s[:i], s[i:]
		} else {
			prefix = "/"
		}
	}
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		return netip.AddrPort{}, "", "must be IP:PORT or :PORT" + map[bool]string{true: "[/prefix]", false: ""}[http] + ", got " + strconv.Quote(s)
	}
	host, portStr := hostport[:i], hostport[i+1:]
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, "", "port must be 1-65535, got " + strconv.Quote(portStr)
	}
	addr := netip.IPv4Unspecified()
	if host != "" {
		a, err := netip.ParseAddr(strings.Trim(host, "[]"))
		if err != nil {
			return netip.AddrPort{}, "", "host must be an IP address or empty, got " + strconv.Quote(host)
		}
		addr = a
	}
	if http && strings.Contains(prefix, "//") {
		return netip.AddrPort{}, "", "path prefix " + strconv.Quote(prefix) + " has an empty segment"
	}
	if len(prefix) > 1 {
		// The router cleans a prefix the same way (xconnect/http
		// cleanPrefix): "/api/" is the route "/api", so two rules that
		// differ by a trailing slash are one route, and the duplicate
		// check must see them as one.
		prefix = strings.TrimRight(prefix, "/")
	}
	return netip.AddrPortFrom(addr, uint16(port)), prefix, ""
}

// readBSP reads bsp/run.json and bsp/drivers.json (embedded mode only).
func (p *parser) readBSP() {
	const file = "bsp/run.json"
	if raw, ok := p.docs["bsp/drivers.json"]; ok {
		p.readDrivers(raw)
	}
	raw, ok := p.docs[file]
	if !ok {
		p.errorf(file, "", "missing: a device revision needs its board support package (validate with --appengine for an app-only state)")
		return
	}
	o := newObject(&p.c, file, "", raw)
	if o == nil {
		return
	}
	b := &BSP{}
	b.InitrdConfig, _ = o.str("initrd_config")
	b.FIT, _ = o.str("fit")
	b.RPiAB, _ = o.str("rpiab")
	b.Linux, _ = o.str("linux")
	b.FDT, _ = o.str("fdt")
	b.Initrd, _ = o.str("initrd")
	b.Firmware, _ = o.str("firmware")
	b.Modules, _ = o.str("modules")
	if addons, ok := o.strings("addons"); ok {
		b.Addons = addons
	}
	for _, k := range o.keys() {
		if strings.HasPrefix(k, "modules_") {
			o.str(k) // kernel-specific modules volume: a known key
		}
	}
	o.finish()
	if b.FIT == "" && b.RPiAB == "" && (b.Linux == "" || b.Initrd == "") {
		p.errorf(file, "", "needs linux and initrd, or fit, or rpiab")
	}
	assets := []struct{ key, file string }{
		{"linux", b.Linux}, {"initrd", b.Initrd}, {"fdt", b.FDT}, {"fit", b.FIT},
		{"rpiab", b.RPiAB}, {"firmware", b.Firmware}, {"modules", b.Modules},
		{"initrd_config", b.InitrdConfig},
	}
	for i, a := range b.Addons {
		assets = append(assets, struct{ key, file string }{indexPath("addons", i), a})
	}
	for _, a := range assets {
		if a.file == "" {
			continue
		}
		if _, ok := p.st.Objects["bsp/"+a.file]; !ok {
			p.errorf(file, a.key, "names %q but the state has no bsp/%s", a.file, a.file)
		}
	}
	p.st.BSP = b
}

func (p *parser) readDrivers(raw json.RawMessage) {
	const file = "bsp/drivers.json"
	o := newObject(&p.c, file, "", raw)
	if o == nil {
		return
	}
	d := &Drivers{Sections: map[string]map[string][]string{}}
	if s, ok := o.str("#spec"); ok && s != "driver-aliases@1" {
		p.warnf(file, "#spec", "unexpected spec %q, want driver-aliases@1", s)
	}
	for _, k := range o.keys() {
		if k == "#spec" {
			continue
		}
		known := k == "all" || strings.HasPrefix(k, "fitconfig:") || strings.HasPrefix(k, "dtb:") || strings.HasPrefix(k, "ovl:")
		sec, ok := o.child(k)
		if !ok {
			continue
		}
		if !known {
			p.warnf(file, k, "unknown section, ignored")
		}
		aliases := map[string][]string{}
		for _, alias := range sec.keys() {
			mods, ok := sec.strings(alias)
			if ok {
				aliases[alias] = mods
			}
		}
		d.Sections[k] = aliases
	}
	p.st.Drivers = d
}

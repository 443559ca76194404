package state

import (
	"bytes"
	"encoding/json"
	"maps"
	"net"
	"net/netip"
	"path"
	"slices"
	"strings"
)

// readContainers builds one Container per <name>/run.json, attaches its
// services.json and objects, and reports documents that belong to nobody.
func (p *parser) readContainers() {
	p.runlevels = map[string]string{}
	p.reqAt = map[string][]string{}
	p.byName = map[string]*Container{}
	for _, dir := range slices.Sorted(maps.Keys(p.runs)) {
		if c := p.readRun(dir, p.runs[dir]); c != nil {
			p.st.Containers = append(p.st.Containers, c)
			p.byName[c.Name] = c
		}
	}
	for _, dir := range slices.Sorted(maps.Keys(p.services)) {
		file := dir + "/services.json"
		c := p.container(dir)
		if c == nil {
			p.errorf(file, "", "no container %q: services.json needs a %s/run.json", dir, dir)
			continue
		}
		c.Exports = p.readExports(file, p.services[dir])
	}
	// Attach objects and inline documents to the container owning them.
	ownerOf := func(key string) *Container {
		name := owner(key)
		if name == "" || name == "bsp" {
			return nil
		}
		return p.container(name)
	}
	for key, sha := range p.st.Objects {
		if c := ownerOf(key); c != nil {
			c.Objects[key] = sha
		}
	}
	for key, raw := range p.st.JSONs {
		if c := ownerOf(key); c != nil {
			c.JSONs[key] = raw
		}
	}
}

// ConfigPrefix is where a container's config overlay lies in the state:
// the key "_config/<name>/etc/x" is the file /etc/x of its root.
func ConfigPrefix(name string) string { return "_config/" + name + "/" }

// ConfigFile is a file of a container's config overlay: the object Sha, or
// the inline document Data.
type ConfigFile struct {
	// Key is the state key; Path the file's path in the root, relative.
	Key, Path string
	Sha       string
	Data      json.RawMessage
}

// ConfigOverlay lists the files of c's config overlay (upstream's
// _config/<name>/), sorted by path.
func (c *Container) ConfigOverlay() []ConfigFile {
	prefix := ConfigPrefix(c.Name)
	var files []ConfigFile
	for key, sha := range c.Objects {
		if p, ok := strings.CutPrefix(key, prefix); ok {
			files = append(files, ConfigFile{Key: key, Path: p, Sha: sha})
		}
	}
	for key, raw := range c.JSONs {
		if p, ok := strings.CutPrefix(key, prefix); ok {
			files = append(files, ConfigFile{Key: key, Path: p, Data: raw})
		}
	}
	slices.SortFunc(files, func(a, b ConfigFile) int { return strings.Compare(a.Path, b.Path) })
	return files
}

// validContainerName says whether name can be a container's id for the
// runtime (libcontainer's ^[\w+.-]+$, and not "." or "..", which would
// name directories of its state).
func validContainerName(name string) bool {
	if name == "" || strings.Trim(name, ".") == "" {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '+', r == '-', r == '.':
		default:
			return false
		}
	}
	return true
}

// maxNameLen is NAME_MAX, the longest file name the kernel takes: a key's
// segments (checkKeyPath) and the names of directories (a container's
// work, logs and disks, by its name; storage entries).
const maxNameLen = 255

// reservedDirs are the top-level directories of a revision that are not
// containers, with what they hold.
var reservedDirs = map[string]string{"_config": "per-container configuration files", "_sigs": "signatures"}

var validRecovery = map[string]RecoveryPolicy{
	"no": RecoveryNo, "on-failure": RecoveryOnFailure, "always": RecoveryAlways,
	"unless-stopped": RecoveryUnlessStopped,
}

// socketOnlyTypes are the service types whose export must be a socket (or
// device node) path: they cannot be reached by a port.
var socketOnlyTypes = map[string]bool{"drm": true, "dbus": true}

var validServiceTypes = map[string]bool{
	"rest": true, "dbus": true, "unix": true, "drm": true, "wayland": true, "tcp": true, "http": true,
}

func (p *parser) readRun(dir string, raw json.RawMessage) *Container {
	file := dir + "/run.json"
	o := newObject(&p.c, file, "", raw)
	if o == nil {
		return nil
	}
	defer o.finish()
	c := &Container{Objects: map[string]string{}, JSONs: map[string]json.RawMessage{}, AutoModFW: true, Roles: []string{"mgmt"}}
	name, ok := o.str("name")
	switch {
	case !ok && !o.has("name"):
		p.errorf(file, "name", "missing: every container needs a name")
		return nil
	case !ok:
		return nil
	case name != dir:
		// Keep going under the directory's name so that one typo does not
		// cascade into errors about every reference to this container.
		p.errorf(file, "name", "is %q but the file is under %s/: they must match", name, dir)
	}
	c.Name = dir
	switch {
	case !validContainerName(dir):
		p.errorf(file, "name", "%q cannot name a container: use letters, digits, '_', '+', '-' and '.' (the runtime's container ids), not only dots", dir)
	case reservedDirs[dir] != "":
		// _config/<file> is filed under the container named by the next
		// segment (owner), and _sigs/ is the signatures': a container
		// of that name would never get its files.
		p.errorf(file, "name", "%q is reserved for the revision's %s", dir, reservedDirs[dir])
	}
	o.str("#spec") // service-manifest-run@1; upstream does not check it either
	c.Type, _ = o.str("type")
	if c.Type != "" && c.Type != "lxc" {
		p.errorf(file, "type", "unsupported container type %q: only lxc", c.Type)
	}
	c.Config, _ = o.str("config")
	if c.Config != "" {
		p.needObject(c, file, "config", c.Config)
	}
	o.str("share") // legacy multi-platform key, ignored by system@1 as upstream
	// Written by pvr's builtin template from PV_CONDITIONS for the
	// conditions of pantavisor before 019; upstream no longer reads it.
	o.has("conditions")
	if rv, ok := o.str("root-volume"); ok {
		c.RootVolume = rv
		p.needVolume(c, file, "root-volume", rv)
	} else if !o.has("root-volume") {
		// Upstream accepts the state and then fails the container at
		// mount time; the engine here refuses it there too
		// ("run.json names no root-volume"). Say so before anything runs.
		p.errorf(file, "root-volume", "missing: every container needs its root filesystem volume, e.g. \"root.squashfs\"")
	}
	if vols, ok := o.strings("volumes"); ok {
		c.Volumes = vols
		for i, v := range vols {
			p.needVolume(c, file, indexPath("volumes", i), v)
		}
	}
	if g, ok := o.str("group"); ok {
		c.Group, c.GroupSet = g, true
	}
	if rl, ok := o.str("runlevel"); ok {
		p.warnf(file, "runlevel", "deprecated: use group")
		if c.GroupSet {
			p.warnf(file, "runlevel", "ignored: group is set")
		} else {
			p.runlevels[name] = rl
		}
	}
	if s, ok := o.str("status_goal"); ok {
		if g, valid := validGoals[s]; valid {
			c.StatusGoal = g
		} else {
			p.errorf(file, "status_goal", "must be MOUNTED, STARTED or READY, got %q", s)
		}
	}
	if s, ok := o.str("restart_policy"); ok {
		if rp, valid := validRestart[s]; valid {
			c.RestartPolicy = rp
		} else {
			p.errorf(file, "restart_policy", "must be system or container, got %q", s)
		}
	}
	if roles, ok := o.strings("roles"); ok {
		c.Roles = []string{}
		for i, r := range roles {
			switch r {
			case "mgmt":
				c.Roles = append(c.Roles, r)
			case "nobody":
			default:
				p.warnf(file, indexPath("roles", i), "unknown role %q, ignored", r)
			}
		}
	}
	if s, ok := o.str("automodfw"); ok {
		c.AutoModFW = s != "no"
	}
	if d, ok := o.child("drivers"); ok {
		c.Drivers.Required, _ = d.strings("required")
		c.Drivers.Optional, _ = d.strings("optional")
		c.Drivers.Manual, _ = d.strings("manual")
		d.finish()
	}
	if st, ok := o.child("storage"); ok {
		c.Storage = map[string]Volume{}
		for _, k := range st.keys() {
			raw, _ := st.raw(k)
			if v := newObject(&p.c, file, st.at(k), raw); v != nil {
				c.Storage[k] = p.readVolume(v)
			}
		}
	}
	if items, ok := o.array("logs"); ok {
		c.Logs = p.readLogs(file, items)
	}
	if o.has("exports") {
		c.Export = true
	}
	if s, ok := o.child("services"); ok {
		c.Requires = p.readRequirements(c.Name, s, "required", nil)
		c.Optional = p.readRequirements(c.Name, s, "optional", c.Requires)
		// pvr's template writes manual beside required and optional, as for
		// drivers; upstream pantavisor does not read it.
		s.has("manual")
		s.finish()
	}
	if ar, ok := o.child("auto_recovery"); ok {
		c.HasAutoRecovery = true
		c.AutoRecovery = p.readAutoRecovery(ar)
	} else {
		c.AutoRecovery.Policy = RecoveryNo
	}
	if n, ok := o.child("network"); ok {
		c.Network = p.readNetwork(n)
	}
	return c
}

// needObject checks that a file a container names is an object of the
// state: the engine mounts a volume and translates a config from the
// object's bytes, which an inline JSON document does not have.
func (p *parser) needObject(c *Container, file, path, name string) {
	key := c.Name + "/" + name
	if _, ok := p.st.Objects[key]; ok {
		return
	}
	if _, ok := p.st.JSONs[key]; ok {
		p.errorf(file, path, "names %q but the state's %s is an inline JSON document, not an object", name, key)
		return
	}
	if _, ok := p.docs[key]; !ok {
		p.errorf(file, path, "names %q but the state has no %s", name, key)
		return
	}
	if p.c.errFiles[key] {
		return // a malformed value: reported on its own key
	}
	// run.json, services.json, src.json, build.json: documents of the
	// container, read (or skipped) as such.
	p.errorf(file, path, "names %q but the state's %s is a document of the container, not an object", name, key)
}

// needVolume checks a root-volume/volumes entry: "file" or "handler:file"
// (upstream's dm-verity/crypt handlers).
func (p *parser) needVolume(c *Container, file, path, v string) {
	name := v
	if h, f, ok := strings.Cut(v, ":"); ok {
		if h == "" || f == "" {
			p.errorf(file, path, "must be FILE or HANDLER:FILE, got %q", v)
			return
		}
		name = f
	}
	p.needObject(c, file, path, name)
}

func (p *parser) readLogs(file string, items []json.RawMessage) []map[string]string {
	logs := []map[string]string{}
	for i, it := range items {
		o := newObject(&p.c, file, indexPath("logs", i), it)
		if o == nil {
			continue
		}
		// Upstream copies each value's token text (pv_json_get_one_str), so
		// "maxsize": 2097152 and "truncate": true are the logger's "2097152"
		// and "true"; only a nested document has no text to give.
		l := map[string]string{}
		for _, k := range o.keys() {
			raw, _ := o.raw(k)
			switch kind(raw) {
			case '"':
				l[k], _ = decodeString(raw)
			case '{', '[':
				p.errorf(file, o.at(k), "must be a string, number or boolean, got %s", describe(raw))
			case 'n':
				p.warnf(file, o.at(k), "null, ignored")
			default:
				l[k] = string(bytes.TrimSpace(raw))
			}
		}
		logs = append(logs, l)
	}
	return logs
}

// readRequirements reads services.required or services.optional. A plain
// string element names a service of any type, as upstream. A consumer has
// one link per service name (xconnect.Graph keeps the first), so a name
// twice in one list is an error, and an optional one that required lists
// (given as required) is ignored with a warning.
func (p *parser) readRequirements(container string, s *object, key string, required []ServiceRequirement) []ServiceRequirement {
	items, ok := s.array(key)
	if !ok {
		return nil
	}
	reqKey := container + "/" + key
	var out []ServiceRequirement
	seen := map[string]string{} // name → key path of its first requirement
	isRequired := make(map[string]bool, len(required))
	for _, r := range required {
		isRequired[r.Name] = true
	}
	unique := func(name, at, namePath string) {
		if name == "" {
			return
		}
		if first, dup := seen[name]; dup {
			p.errorf(s.file, namePath, "duplicate requirement of service %q: %s has it; a consumer has one link per service", name, first)
			return
		}
		seen[name] = at
		if isRequired[name] {
			p.warnf(s.file, namePath, "ignored: services.required lists %q already", name)
		}
	}
	for i, it := range items {
		if kind(it) == '"' {
			name, _ := decodeString(it)
			at := itemPath(s.at(key), i, name)
			unique(name, at, at)
			out = append(out, ServiceRequirement{Name: name})
			p.reqAt[reqKey] = append(p.reqAt[reqKey], at)
			continue
		}
		at := itemPath(s.at(key), i, peekName(it, "service", "name"))
		o := newObject(&p.c, s.file, at, it)
		if o == nil {
			continue
		}
		var r ServiceRequirement
		svc, hasSvc := o.str("service")
		nm, hasName := o.str("name")
		switch {
		case hasSvc:
			r.Name = svc
			if hasName && nm != svc {
				p.warnf(s.file, joinPath(at, "name"), "ignored: service %q is the name", svc)
			}
		case hasName:
			r.Name = nm
		default:
			p.errorf(s.file, joinPath(at, "name"), "missing: the service name")
		}
		if t, ok := o.str("type"); ok {
			if validServiceTypes[t] {
				r.Type = t
			} else {
				p.errorf(s.file, joinPath(at, "type"), "unknown service type %q: rest, dbus, unix, drm, wayland, tcp or http", t)
			}
		}
		r.Provider, _ = o.str("provider")
		r.Role, _ = o.str("role")
		r.Interface, _ = o.str("interface")
		if t, ok := o.str("target"); ok {
			r.Target = t
		}
		if t, ok := o.str("external"); ok {
			if r.Target != "" {
				p.warnf(s.file, joinPath(at, "target"), "ignored: external is set")
			}
			r.Target = t
		}
		o.finish()
		nameKey := "name"
		if hasSvc {
			nameKey = "service"
		}
		unique(r.Name, at, joinPath(at, nameKey))
		out = append(out, r)
		p.reqAt[reqKey] = append(p.reqAt[reqKey], at)
	}
	return out
}

func (p *parser) readAutoRecovery(o *object) AutoRecovery {
	ar := AutoRecovery{Policy: RecoveryNo}
	pol, hasPol := o.str("policy")
	if t, ok := o.str("type"); ok {
		if hasPol {
			p.warnf(o.file, o.at("type"), "ignored: policy is set")
		} else {
			p.warnf(o.file, o.at("type"), "accepted as an alias of policy; write policy")
			pol, hasPol = t, true
		}
	}
	if hasPol {
		if rp, valid := validRecovery[pol]; valid {
			ar.Policy = rp
		} else {
			p.errorf(o.file, o.at(map[bool]string{true: "policy", false: "type"}[o.has("policy")]), "must be no, on-failure, always or unless-stopped, got %q", pol)
		}
	}
	nonNeg := func(key, alias string) int {
		n, ok := o.integer(key)
		at := key
		if a, aok := o.integer(alias); aok {
			if ok {
				p.warnf(o.file, o.at(alias), "ignored: %s is set", key)
			} else {
				p.warnf(o.file, o.at(alias), "accepted as an alias of %s; write %s", key, key)
				n, ok, at = a, true, alias
			}
		}
		if !ok {
			return 0
		}
		if n < 0 {
			p.errorf(o.file, o.at(at), "must be >= 0, got %d", n)
			return 0
		}
		return int(min(n, 1<<31-1))
	}
	ar.MaxRetries = nonNeg("max_retries", "maximum_retry_count")
	ar.RetryDelay = nonNeg("retry_delay", "")
	ar.ResetWindow = nonNeg("reset_window", "")
	if f, ok := o.number("backoff_factor"); ok {
		if f < 0 {
			p.errorf(o.file, o.at("backoff_factor"), "must be >= 0, got %g", f)
		} else {
			ar.BackoffFactor = f
		}
	}
	o.finish()
	return ar
}

func (p *parser) readNetwork(o *object) *Network {
	n := &Network{}
	if m, ok := o.str("mode"); ok {
		switch NetworkMode(m) {
		case NetHost, NetPool:
			n.Mode = NetworkMode(m)
		default:
			p.errorf(o.file, o.at("mode"), "must be host or pool, got %q", m)
		}
	}
	if pool, ok := o.str("pool"); ok {
		n.Pool = pool
		if pool == "" {
			// Upstream takes "" for pool mode without a pool: the
			// container silently gets no network at all.
			p.errorf(o.file, o.at("pool"), "must name a pool of device.json network.pools%s", p.poolHint())
		}
		if n.Mode == NetHost {
			p.errorf(o.file, o.at("pool"), "a host-mode container cannot take an address from pool %q", pool)
		}
		n.Mode = NetPool
	} else if n.Mode == NetPool {
		p.errorf(o.file, o.at("pool"), "missing: mode pool needs the name of a pool")
	}
	if n.Mode == "" {
		n.Mode = NetHost
	}
	if h, ok := o.str("hostname"); ok {
		if !validHostname(h) {
			p.errorf(o.file, o.at("hostname"), "%q is not a valid host name", h)
		}
		n.Hostname = h
	}
	ipKey := "ip"
	ipStr, hasIP := o.str("ip")
	if s, ok := o.str("static_ip"); ok {
		if hasIP {
			p.warnf(o.file, o.at("static_ip"), "ignored: ip is set")
		} else {
			p.warnf(o.file, o.at("static_ip"), "accepted as an alias of ip; write ip")
			ipStr, hasIP, ipKey = s, true, "static_ip"
		}
	}
	if hasIP {
		addrStr := ipStr
		if a, _, cut := strings.Cut(ipStr, "/"); cut {
			addrStr = a
			if _, err := netip.ParsePrefix(ipStr); err != nil {
				p.errorf(o.file, o.at(ipKey), "must be an IPv4 address, optionally with /prefix, got %q", ipStr)
				addrStr = ""
			}
		}
		if addrStr != "" {
			if a, err := netip.ParseAddr(addrStr); err != nil || !a.Is4() {
				p.errorf(o.file, o.at(ipKey), "must be an IPv4 address, got %q", ipStr)
			} else {
				n.IP, n.ipKey = a, ipKey
			}
		}
		if n.Mode != NetPool {
			p.errorf(o.file, o.at(ipKey), "a static address needs a pool")
		}
	}
	if m, ok := o.str("mac"); ok {
		hw, err := net.ParseMAC(m)
		switch {
		case err != nil || len(hw) != 6:
			p.errorf(o.file, o.at("mac"), "must be a MAC address like 02:00:0a:00:05:02, got %q", m)
		case hw[0]&1 == 1:
			p.errorf(o.file, o.at("mac"), "%s is a multicast address", m)
		default:
			n.MAC = hw.String()
		}
		if n.Mode != NetPool {
			p.errorf(o.file, o.at("mac"), "a static MAC needs a pool")
		}
	}
	o.finish()
	return n
}

func validHostname(h string) bool {
	if h == "" || len(h) > 64 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// readExports reads services.json in either shape: the current
// {"#spec":"service-manifest-xconnect@1","services":[...]} or a bare array.
func (p *parser) readExports(file string, raw json.RawMessage) []ServiceExport {
	var items []json.RawMessage
	base := ""
	switch kind(raw) {
	case '[':
		var err error
		if items, err = splitArray(raw); err != nil {
			p.errorf(file, "", "not valid JSON")
			return nil
		}
	case '{':
		o := newObject(&p.c, file, "", raw)
		if o == nil {
			return nil
		}
		o.str("#spec")
		items, _ = o.array("services")
		base = "services"
		o.finish()
	default:
		p.errorf(file, "", "must be an object with services or an array, got %s", describe(raw))
		return nil
	}
	seen := map[string]bool{}
	var out []ServiceExport
	for i, it := range items {
		at := itemPath(base, i, peekName(it, "name"))
		o := newObject(&p.c, file, at, it)
		if o == nil {
			continue
		}
		var e ServiceExport
		var ok bool
		if e.Name, ok = o.str("name"); !ok || e.Name == "" {
			p.errorf(file, joinPath(at, "name"), "missing: every exported service needs a name")
		} else if seen[e.Name] {
			p.errorf(file, joinPath(at, "name"), "duplicate service %q", e.Name)
		}
		seen[e.Name] = true
		if e.Type, ok = o.str("type"); !ok {
			p.errorf(file, joinPath(at, "type"), "missing: rest, dbus, unix, drm, wayland, tcp or http")
		} else if !validServiceTypes[e.Type] {
			p.errorf(file, joinPath(at, "type"), "unknown service type %q: rest, dbus, unix, drm, wayland, tcp or http", e.Type)
			e.Type = "" // matches any requirement: the error above is the one to fix
		}
		if e.Socket, ok = o.str("socket"); ok && !path.IsAbs(e.Socket) {
			p.errorf(file, joinPath(at, "socket"), "must be an absolute path inside the provider, got %q", e.Socket)
		}
		n, hasPort := o.integer("port")
		badPort := hasPort && (n < 0 || n > 65535)
		if badPort {
			p.errorf(file, joinPath(at, "port"), "must be 0-65535, got %d", n)
		} else if hasPort {
			e.Port = int(n)
		}
		// The link plane and ingress reach an export by its socket, else
		// by its port (xconnect/mesh Backend.dialOnce: "exports neither a
		// socket nor a port"); a drm node is opened and a dbus bus dialled
		// by path only (drm.Inject, xconnect.DialAs).
		switch {
		case e.Socket != "" || badPort || o.has("socket") || e.Type == "":
			// reachable, or its socket, port or type is already reported
		case socketOnlyTypes[e.Type]:
			p.errorf(file, joinPath(at, "socket"), "missing: a %s service is reached by its socket path inside the provider", e.Type)
		case e.Port != 0:
		case hasPort:
			p.errorf(file, joinPath(at, "port"), "0 reaches nothing: give the port the service listens on (1-65535), or a socket")
		case e.Type == "tcp" || e.Type == "http":
			p.errorf(file, joinPath(at, "port"), "missing: a %s service needs a port or a socket", e.Type)
		default:
			p.errorf(file, joinPath(at, "socket"), "missing: a %s service needs a socket (or a port)", e.Type)
		}
		o.finish()
		out = append(out, e)
	}
	return out
}

// assignGroups resolves every container's group, goal and policy.
func (p *parser) assignGroups() {
	if len(p.st.Groups) == 0 {
		return // device.json without groups: already an error
	}
	if p.st.DefaultGroups {
		p.assignRunlevels()
	}
	last := p.st.Groups[len(p.st.Groups)-1].Name
	for _, c := range p.st.Containers {
		file := c.Name + "/run.json"
		if rl, ok := p.runlevels[c.Name]; ok && !c.GroupSet {
			if p.group(rl) == nil {
				p.errorf(file, "runlevel", "unknown runlevel %q: no group of that name", rl)
			} else {
				c.Group, c.GroupSet = rl, true
			}
		}
		if c.Group == "" && !c.GroupSet {
			c.Group = last
		}
		g := p.group(c.Group)
		if g == nil {
			if c.GroupSet {
				p.errorf(file, "group", "unknown group %q (groups: %s)", c.Group, p.groupNames())
			}
			continue
		}
		if c.StatusGoal == "" {
			c.StatusGoal = g.StatusGoal
		}
		if c.RestartPolicy == "" {
			c.RestartPolicy = g.RestartPolicy
		}
	}
}

// assignRunlevels applies upstream's runlevel compatibility for states
// without groups: when no container is in "root", the first unassigned one
// in alphabetical order goes there; every other unassigned one goes to
// "platform".
func (p *parser) assignRunlevels() {
	unassigned := func(c *Container) bool { return !c.GroupSet && p.runlevels[c.Name] == "" }
	inRoot := false
	for _, c := range p.st.Containers {
		if c.Group == "root" || p.runlevels[c.Name] == "root" {
			inRoot = true
		}
	}
	for _, c := range p.st.Containers { // sorted by name
		if !unassigned(c) {
			continue
		}
		if !inRoot {
			c.Group, inRoot = "root", true
		} else {
			c.Group = "platform"
		}
		c.GroupSet = false
	}
}

func (p *parser) groupNames() string {
	names := make([]string, len(p.st.Groups))
	for i, g := range p.st.Groups {
		names[i] = g.Name
	}
	return strings.Join(names, ", ")
}

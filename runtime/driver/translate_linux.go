package driver

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/cgroups"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/runtime/driver/initshim"
	"github.com/pantavisor/pv/runtime/rootfs"
	"github.com/pantavisor/pv/runtime/seccomp"
	"github.com/pantavisor/pv/spec"
)

// DefaultInit is the init command when the spec names none, as in
// upstream's LXC template.
const DefaultInit = "/sbin/init"

// DefaultPath is PATH for the init process when the spec sets none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ErrInvalidSpec wraps every translation error, so callers can tell a bad
// container description from a runtime failure.
var ErrInvalidSpec = errors.New("invalid container spec")

// Input is what Translate needs to describe one container to libcontainer.
type Input struct {
	// Name is the container name: its libcontainer id, its cgroup name and
	// its default hostname.
	Name string
	// Spec is the runtime-neutral description.
	Spec *spec.Container
	// Rootfs is the absolute path of the mounted root filesystem.
	Rootfs string
	// CgroupParent is the cgroup the container's cgroup is made in
	// (relative to the caller's own cgroup unless absolute).
	CgroupParent string
	// ResolveSource maps the source of a bind mount as written in the spec
	// (e.g. /volumes/<name>/docker--etc-nginx) to the host path to bind.
	// Nil binds sources as written.
	ResolveSource func(string) (string, error)
	// Bounding lists the capabilities the caller itself may grant
	// (lower case, no CAP_ prefix); nil means every capability known to
	// the library. The default set is limited to it, and CapKeep naming
	// a capability outside it is an error: the kernel would refuse it.
	Bounding []string
	// CgroupNamespaces says the kernel has cgroup namespaces (4.6+):
	// then every container gets its own unless it keeps the host's, as
	// LXC clones every namespace lxc.namespace.keep does not name.
	CgroupNamespaces bool
	// CgroupV2 says the host has the unified cgroup v2 hierarchy only.
	CgroupV2 bool
}

// Translated is the libcontainer description of a container and of its
// init process.
type Translated struct {
	Config   *configs.Config
	Args     []string
	Env      []string
	Cwd      string
	UID, GID int
}

// Translate turns a spec.Container into a libcontainer configuration. It
// reads the file system only to resolve bind-mount sources (for "optional"
// entries whose source is missing, which are skipped). Every problem found
// is reported, joined, each wrapped in ErrInvalidSpec.
//
// Choices, where LXC and libcontainer differ:
//   - capabilities: all capabilities minus CapDrop (LXC's default for a
//     privileged container), or exactly CapKeep when it is set;
//   - namespaces: mnt, uts, ipc, pid and net are created unless named in
//     NamespaceKeep, and cgroup too where the kernel has cgroup
//     namespaces (as LXC does); a user or time namespace is never created;
//   - /proc is always mounted (libcontainer's init needs it); /sys and
//     /sys/fs/cgroup only as MountAuto asks;
//   - the console is not a tty: TTYMax is ignored, PTYMax bounds the
//     container's own devpts instance.
func Translate(in Input) (*Translated, error) {
	if in.Spec == nil {
		return nil, fmt.Errorf("translate container %s: no spec: %w", in.Name, ErrInvalidSpec)
	}
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, a...)))
	}
	s := in.Spec
	if in.Name == "" {
		bad("empty container name")
	}
	if !filepath.IsAbs(in.Rootfs) {
		bad("rootfs %q is not an absolute path", in.Rootfs)
	}
	// Confinement the configuration asks for and this runtime does not
	// enforce refuses the container: running it with less would be a
	// silent downgrade.
	for _, u := range s.Unenforceable {
		bad("refused: %s", u)
	}

	ns, err := namespaces(s.NamespaceKeep, in.CgroupNamespaces)
	if err != nil {
		errs = append(errs, err)
	}
	caps, err := capabilities(s.CapDrop, s.CapKeep, in.Bounding)
	if err != nil {
		errs = append(errs, err)
	}
	res, err := resources(s.Cgroup, s.DevicesAllow, s.DevicesDeny)
	if err != nil {
		errs = append(errs, err)
	}
	cpuWeightFor(res, in.CgroupV2)
	auto, err := parseMountAuto(s.MountAuto)
	if err != nil {
		errs = append(errs, err)
	}
	userMounts, err := mounts(s.Mounts, in.ResolveSource)
	if err != nil {
		errs = append(errs, err)
	}

	cfg := &configs.Config{
		Rootfs:          in.Rootfs,
		Namespaces:      ns,
		Capabilities:    caps,
		NoNewPrivileges: s.NoNewPrivileges,
		Devices:         deviceNodes(),
		Cgroups: &cgroups.Cgroup{
			Name:      in.Name,
			Parent:    in.CgroupParent,
			Resources: res,
		},
		// The init is cloned from the supervisor, whose oom_score_adj
		// keeps it last for the OOM killer: a container gets the
		// kernel's default back, as under LXC (lxc.proc.* is ignored).
		OomScoreAdj: new(int),
	}
	// As LXC: a profile is applied where the kernel enforces AppArmor
	// (libcontainer has the init change to it at its exec; a profile the
	// kernel has not loaded fails the start) and ignored where it does not.
	if p := s.AppArmorProfile; p != "" && p != "unconfined" && appArmorEnabled() {
		if p == "generated" {
			bad("refused: lxc.apparmor.profile = generated: LXC makes that profile with apparmor_parser, which this runtime does not run")
		}
		cfg.AppArmorProfile = p
	}
	if len(s.UIDMap) > 0 || len(s.GIDMap) > 0 {
		if err := userNamespace(cfg, s); err != nil {
			errs = append(errs, err)
		}
	}
	if ns.Contains(configs.NEWUTS) {
		cfg.Hostname = s.Hostname
		if cfg.Hostname == "" {
			cfg.Hostname = in.Name
		}
	}
	if ns.Contains(configs.NEWNET) {
		cfg.Networks = []*configs.Network{{Type: "loopback", Address: "127.0.0.1/0", Gateway: "localhost"}}
	}
	// As LXC does: a container in a cgroup namespace of its own that
	// keeps CAP_SYS_ADMIN can mount its cgroups itself, and they are not
	// mounted for it, unless :force asks or the host is cgroup v2 only
	// (many inits do not mount cgroup2 themselves).
	if auto.cgroup != "" && !auto.cgroupForce && !in.CgroupV2 && ns.Contains(configs.NEWCGROUP) &&
		caps != nil && slices.Contains(caps.Bounding, "CAP_SYS_ADMIN") {
		auto.cgroup = ""
	}
	cfg.Mounts = baseMounts(ns.Contains(configs.NEWIPC), s.PTYMax, auto)
	if cfg.Namespaces.Contains(configs.NEWUSER) && !cfg.Namespaces.Contains(configs.NEWNET) {
		// The kernel mounts sysfs only for the owner of the network
		// namespace, and a container of its own user namespace in the
		// host's network namespace is not: it gets the host's /sys bound
		// instead, as runc does, with the same flags.
		for _, m := range cfg.Mounts {
			if m.Device == "sysfs" {
				m.Source, m.Device, m.Flags = "/sys", "bind", m.Flags|unix.MS_BIND|unix.MS_REC
			}
		}
	}
	cfg.Mounts = append(cfg.Mounts, userMounts...)
	if auto.proc == "mixed" {
		cfg.ReadonlyPaths = []string{"/proc/sys", "/proc/sysrq-trigger"}
	}

	t := &Translated{
		Config: cfg,
		Args:   slices.Clone(s.Args),
		Env:    environment(s.Env),
		Cwd:    s.Cwd,
	}
	if len(t.Args) == 0 {
		t.Args = []string{DefaultInit}
	}
	if s.Seccomp != nil {
		if err := withSeccomp(t, s.Seccomp); err != nil {
			bad("refused: lxc.seccomp.profile: %v", err)
		}
	}
	if t.Cwd == "" {
		t.Cwd = "/"
	}
	if !path.IsAbs(t.Cwd) {
		bad("cwd %q is not absolute", t.Cwd)
	}
	if s.UID != nil {
		t.UID = int(*s.UID)
	}
	if s.GID != nil {
		t.GID = int(*s.GID)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("translate container %s: %w", in.Name, errors.Join(errs...))
	}
	return t, nil
}

// environment builds the init environment: PATH and container=lxc (what
// LXC gives and what software probes to detect a container), then the
// spec's variables, a later key replacing an earlier one in place.
func environment(specEnv []string) []string {
	env := []string{"PATH=" + DefaultPath, "container=lxc"}
	index := map[string]int{"PATH": 0, "container": 1}
	for _, kv := range specEnv {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			env[i] = kv
			continue
		}
		index[k] = len(env)
		env = append(env, kv)
	}
	return env
}

// namespaces returns the default set minus the kept ones. The cgroup
// namespace is in the default set where the kernel has it (cgroupns):
// besides matching LXC, it makes the container's /sys/fs/cgroup cheaper
// to set up on cgroup v1 (one cgroup mount per hierarchy instead of a
// bind mount with its extra remount and checks).
func namespaces(keep []string, cgroupns bool) (configs.Namespaces, error) {
	create := map[configs.NamespaceType]bool{
		configs.NEWNS: true, configs.NEWUTS: true, configs.NEWIPC: true,
		configs.NEWPID: true, configs.NEWNET: true, configs.NEWCGROUP: cgroupns,
	}
	var errs []error
	for _, k := range keep {
		switch k {
		case "net":
			create[configs.NEWNET] = false
		case "ipc":
			create[configs.NEWIPC] = false
		case "uts":
			create[configs.NEWUTS] = false
		case "pid":
			create[configs.NEWPID] = false
		case "cgroup":
			create[configs.NEWCGROUP] = false
		case "user", "time":
			// Never created: keeping them is the default.
		case "mnt", "mount":
			errs = append(errs, fmt.Errorf("%w: namespace.keep %q: a container needs its own mount namespace", ErrInvalidSpec, k))
		default:
			errs = append(errs, fmt.Errorf("%w: namespace.keep %q: unknown namespace", ErrInvalidSpec, k))
		}
	}
	var ns configs.Namespaces
	for _, t := range []configs.NamespaceType{configs.NEWNS, configs.NEWUTS, configs.NEWIPC, configs.NEWPID, configs.NEWNET, configs.NEWCGROUP} {
		if create[t] {
			ns = append(ns, configs.Namespace{Type: t})
		}
	}
	return ns, errors.Join(errs...)
}

// userNamespace honours lxc.idmap: the container gets a user namespace of
// its own with the configured ranges, so its root is the mapped host id.
// What LXC would refuse, or what the kernel cannot give, refuses the
// container naming the key; running it with host ids instead would be the
// silent downgrade the key exists to prevent.
func userNamespace(cfg *configs.Config, s *spec.Container) error {
	if len(s.UIDMap) == 0 || len(s.GIDMap) == 0 {
		return fmt.Errorf("%w: refused: lxc.idmap: a user namespace needs both uid (u) and gid (g) ranges", ErrInvalidSpec)
	}
	if slices.Contains(s.NamespaceKeep, "user") {
		return fmt.Errorf("%w: refused: lxc.idmap: lxc.namespace.keep keeps the host's user namespace", ErrInvalidSpec)
	}
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		return fmt.Errorf("%w: refused: lxc.idmap: this kernel has no user namespaces: %w", ErrInvalidSpec, err)
	}
	conv := func(in []spec.IDMap) []configs.IDMap {
		out := make([]configs.IDMap, len(in))
		for i, m := range in {
			out[i] = configs.IDMap{ContainerID: int64(m.ContainerID), HostID: int64(m.HostID), Size: int64(m.Count)}
		}
		return out
	}
	cfg.Namespaces = append(cfg.Namespaces, configs.Namespace{Type: configs.NEWUSER})
	cfg.UIDMappings = conv(s.UIDMap)
	cfg.GIDMappings = conv(s.GIDMap)
	// The init runs as lxc.init.uid/gid (0 by default) inside; an id the
	// maps do not cover cannot be switched to and would fail at exec.
	var uid, gid uint32
	if s.UID != nil {
		uid = *s.UID
	}
	if s.GID != nil {
		gid = *s.GID
	}
	_, uerr := cfg.HostUID(int(uid))
	_, gerr := cfg.HostGID(int(gid))
	if uerr != nil || gerr != nil {
		return fmt.Errorf("%w: refused: lxc.idmap: the init's uid %d / gid %d is not mapped", ErrInvalidSpec, uid, gid)
	}
	return nil
}

// knownCaps maps lower-case names without the CAP_ prefix to capabilities.
var knownCaps = func() map[string]capability.Cap {
	m := map[string]capability.Cap{}
	for _, c := range capability.ListKnown() {
		m[c.String()] = c
	}
	return m
}()

// capabilities returns all available capabilities minus drop, or exactly
// keep when keep is not empty ("none" keeps nothing).
func capabilities(drop, keep, bounding []string) (*configs.Capabilities, error) {
	var errs []error
	available := func(c capability.Cap) bool { return true }
	if bounding != nil {
		avail := map[string]bool{}
		for _, b := range bounding {
			avail[b] = true
		}
		available = func(c capability.Cap) bool { return avail[c.String()] }
	}
	lookup := func(key, name string) (capability.Cap, bool) {
		c, ok := knownCaps[strings.TrimPrefix(strings.ToLower(name), "cap_")]
		if !ok {
			errs = append(errs, fmt.Errorf("%w: %s %q: unknown capability", ErrInvalidSpec, key, name))
		}
		return c, ok
	}
	set := map[capability.Cap]bool{}
	if len(keep) > 0 {
		for _, name := range keep {
			if name == "none" {
				continue
			}
			if c, ok := lookup("cap.keep", name); ok {
				if !available(c) {
					errs = append(errs, fmt.Errorf("%w: cap.keep %q: not in the supervisor's bounding set", ErrInvalidSpec, name))
					continue
				}
				set[c] = true
			}
		}
	} else {
		for _, c := range knownCaps {
			if available(c) {
				set[c] = true
			}
		}
		for _, name := range drop {
			if c, ok := lookup("cap.drop", name); ok {
				delete(set, c)
			}
		}
	}
	list := make([]capability.Cap, 0, len(set))
	for c := range set {
		list = append(list, c)
	}
	slices.Sort(list)
	names := make([]string, len(list))
	for i, c := range list {
		names[i] = "CAP_" + strings.ToUpper(c.String())
	}
	return &configs.Capabilities{
		Bounding:  names,
		Effective: slices.Clone(names),
		Permitted: slices.Clone(names),
	}, errors.Join(errs...)
}

// resources translates cgroup settings and device rules. Keys it does not
// know are errors, listed together: silently ignoring a limit is worse
// than refusing to start.
func resources(settings []spec.CgroupSetting, allow, deny []string) (*cgroups.Resources, error) {
	r := &cgroups.Resources{}
	var errs []error
	var unknown []string
	for _, st := range settings {
		if err := setResource(r, st, &allow, &deny); err != nil {
			if errors.Is(err, errUnknownKey) {
				unknown = append(unknown, fmt.Sprintf("cgroup%s.%s", versionSuffix(st.Version), st.Key))
				continue
			}
			errs = append(errs, fmt.Errorf("%w: cgroup%s.%s = %q: %v", ErrInvalidSpec, versionSuffix(st.Version), st.Key, st.Value, err))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		errs = append(errs, fmt.Errorf("%w: unsupported cgroup settings: %s", ErrInvalidSpec, strings.Join(unknown, ", ")))
	}
	rules, err := deviceRules(allow, deny)
	if err != nil {
		errs = append(errs, err)
	}
	r.Devices = rules
	return r, errors.Join(errs...)
}

// cpuWeightFor gives a CPU weight asked in the other cgroup version's
// terms in this host's: the cgroup library writes CpuShares on v1 and
// CpuWeight on v2 only, and leaves the conversion to its caller (as runc
// does in its spec conversion), so lxc.cgroup.cpu.shares on a v2 host, or
// lxc.cgroup2.cpu.weight on a v1 one, was taken and then written nowhere.
// Shares become a weight by the library's own function; a weight becomes
// shares as the kernel maps the two (weight × 1024 / 100).
func cpuWeightFor(r *cgroups.Resources, v2 bool) {
	switch {
	case v2 && r.CpuShares != 0 && r.CpuWeight == 0:
		r.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(r.CpuShares)
	case !v2 && r.CpuWeight != 0 && r.CpuShares == 0:
		r.CpuShares = min(max(r.CpuWeight*1024/100, 2), 262144)
	}
}

func versionSuffix(v int) string {
	if v == 2 {
		return "2"
	}
	return ""
}

var errUnknownKey = errors.New("unknown key")

func setResource(r *cgroups.Resources, st spec.CgroupSetting, allow, deny *[]string) error {
	v := strings.TrimSpace(st.Value)
	var err error
	switch st.Key {
	case "memory.limit_in_bytes", "memory.max":
		r.Memory, err = parseBytes(v)
	case "memory.soft_limit_in_bytes", "memory.low":
		r.MemoryReservation, err = parseBytes(v)
	case "memory.memsw.limit_in_bytes":
		r.MemorySwap, err = parseBytes(v)
	case "memory.swappiness":
		var n uint64
		n, err = strconv.ParseUint(v, 10, 64)
		r.MemorySwappiness = &n
	case "memory.oom_control":
		r.OomKillDisable = v == "1"
		if v != "0" && v != "1" {
			err = errors.New("want 0 or 1")
		}
	case "pids.max":
		var n int64 = -1
		if v != "max" {
			n, err = strconv.ParseInt(v, 10, 64)
		}
		r.PidsLimit = &n
	case "cpu.shares":
		r.CpuShares, err = strconv.ParseUint(v, 10, 64)
	case "cpu.weight":
		r.CpuWeight, err = strconv.ParseUint(v, 10, 64)
	case "cpu.cfs_quota_us":
		r.CpuQuota, err = strconv.ParseInt(v, 10, 64)
	case "cpu.cfs_period_us":
		r.CpuPeriod, err = strconv.ParseUint(v, 10, 64)
	case "cpu.max":
		quota, period, _ := strings.Cut(v, " ")
		r.CpuQuota = -1
		if quota != "max" {
			r.CpuQuota, err = strconv.ParseInt(quota, 10, 64)
		}
		if err == nil && period != "" {
			r.CpuPeriod, err = strconv.ParseUint(period, 10, 64)
		}
	case "cpuset.cpus":
		r.CpusetCpus = v
	case "cpuset.mems":
		r.CpusetMems = v
	case "blkio.weight", "io.bfq.weight":
		var n uint64
		n, err = strconv.ParseUint(v, 10, 16)
		r.BlkioWeight = uint16(n)
	case "devices.allow":
		*allow = append(*allow, v)
	case "devices.deny":
		*deny = append(*deny, v)
	default:
		return errUnknownKey
	}
	return err
}

// parseBytes reads a memory size as the kernel's cgroup files accept it:
// a number with an optional k, m or g suffix, or -1 / max for no limit.
func parseBytes(s string) (int64, error) {
	if s == "-1" || s == "max" {
		return -1, nil
	}
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		}
		if mult != 1 {
			s = s[:n-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	if n > math.MaxInt64/mult {
		// n*mult would wrap, to a negative size or a small one.
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// deviceRules builds the device cgroup rules: "a" in allow means every
// device (upstream's template); otherwise deny all, allow libcontainer's
// default set and the allow rules. Deny rules always come last.
func deviceRules(allow, deny []string) ([]*devices.Rule, error) {
	var rules []*devices.Rule
	var errs []error
	if slices.Contains(allow, "a") {
		rules = append(rules, &devices.Rule{Type: devices.WildcardDevice, Major: devices.Wildcard, Minor: devices.Wildcard, Permissions: "rwm", Allow: true})
	} else {
		rules = append(rules, &devices.Rule{Type: devices.WildcardDevice, Major: devices.Wildcard, Minor: devices.Wildcard, Permissions: "rwm", Allow: false})
		for _, d := range specconv.AllowedDevices {
			rule := d.Rule
			rules = append(rules, &rule)
		}
		for _, a := range allow {
			r, err := parseDeviceRule(a, true)
			if err != nil {
				errs = append(errs, fmt.Errorf("%w: cgroup.devices.allow %q: %v", ErrInvalidSpec, a, err))
				continue
			}
			rules = append(rules, r)
		}
	}
	for _, d := range deny {
		r, err := parseDeviceRule(d, false)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: cgroup.devices.deny %q: %v", ErrInvalidSpec, d, err))
			continue
		}
		rules = append(rules, r)
	}
	return rules, errors.Join(errs...)
}

// parseDeviceRule reads a devices.allow/deny line: "a", or
// "<a|b|c> <major|*>:<minor|*> [rwm]".
func parseDeviceRule(s string, allow bool) (*devices.Rule, error) {
	f := strings.Fields(s)
	if len(f) == 0 || len(f) > 3 || len(f[0]) != 1 {
		return nil, errors.New("want TYPE [MAJOR:MINOR [ACCESS]]")
	}
	r := &devices.Rule{Major: devices.Wildcard, Minor: devices.Wildcard, Permissions: "rwm", Allow: allow}
	switch f[0] {
	case "a":
		r.Type = devices.WildcardDevice
	case "b":
		r.Type = devices.BlockDevice
	case "c":
		r.Type = devices.CharDevice
	default:
		return nil, fmt.Errorf("device type %q is not a, b or c", f[0])
	}
	if len(f) >= 2 {
		maj, min, ok := strings.Cut(f[1], ":")
		if !ok {
			return nil, fmt.Errorf("device number %q is not MAJOR:MINOR", f[1])
		}
		var err error
		if r.Major, err = deviceNumber(maj); err != nil {
			return nil, err
		}
		if r.Minor, err = deviceNumber(min); err != nil {
			return nil, err
		}
	}
	if len(f) == 3 {
		if strings.Trim(f[2], "rwm") != "" {
			return nil, fmt.Errorf("access %q is not a subset of rwm", f[2])
		}
		r.Permissions = devices.Permissions(f[2])
	}
	return r, nil
}

func deviceNumber(s string) (int64, error) {
	if s == "*" {
		return devices.Wildcard, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("device number %q is not a number or *", s)
	}
	return n, nil
}

// deviceNodes are the nodes created in the container's /dev tmpfs: the
// usual null, zero, full, random, urandom and tty.
func deviceNodes() []*devices.Device {
	var out []*devices.Device
	for _, d := range specconv.AllowedDevices {
		if d.Path != "" {
			dev := *d
			out = append(out, &dev)
		}
	}
	return out
}

// mountAuto is the parsed lxc.mount.auto list: "" (absent), "ro", "rw" or
// "mixed" per filesystem.
type mountAuto struct {
	proc, sys, cgroup string
	// cgroupForce: a cgroup item ended in :force (mount even where the
	// container could mount its cgroups itself).
	cgroupForce bool
}

func parseMountAuto(list []string) (mountAuto, error) {
	a := mountAuto{proc: "mixed"}
	var errs []error
	for _, item := range list {
		if rest, ok := strings.CutSuffix(item, ":force"); ok && strings.HasPrefix(item, "cgroup") {
			a.cgroupForce, item = true, rest
		}
		switch item {
		case "proc", "proc:mixed":
			a.proc = "mixed"
		case "proc:rw":
			a.proc = "rw"
		case "sys", "sys:mixed", "sys:ro":
			// sys:mixed leaves /sys/devices/virtual/net writable in LXC;
			// here all of /sys is read-only.
			a.sys = "ro"
		case "sys:rw":
			a.sys = "rw"
		case "cgroup", "cgroup:mixed", "cgroup:ro", "cgroup-full", "cgroup-full:mixed", "cgroup-full:ro":
			a.cgroup = "ro"
		case "cgroup:rw", "cgroup-full:rw":
			a.cgroup = "rw"
		default:
			errs = append(errs, fmt.Errorf("%w: mount.auto %q: unsupported", ErrInvalidSpec, item))
		}
	}
	return a, errors.Join(errs...)
}

const noExecSuidDev = unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV

// baseMounts are the runtime's own mounts, before the spec's.
func baseMounts(ownIPC bool, ptyMax int, a mountAuto) []*configs.Mount {
	pts := "newinstance,ptmxmode=0666,mode=0620,gid=5"
	if ptyMax > 0 {
		pts += ",max=" + strconv.Itoa(ptyMax)
	}
	m := []*configs.Mount{
		{Source: "proc", Destination: "/proc", Device: "proc", Flags: noExecSuidDev},
		{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755,size=65536k"},
		{Source: "devpts", Destination: "/dev/pts", Device: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: pts},
		{Source: "shm", Destination: "/dev/shm", Device: "tmpfs", Flags: noExecSuidDev, Data: "mode=1777,size=65536k"},
	}
	if ownIPC {
		// The mqueue filesystem shows the IPC namespace of whoever mounts
		// it: only mount it when the container has its own.
		m = append(m, &configs.Mount{Source: "mqueue", Destination: "/dev/mqueue", Device: "mqueue", Flags: noExecSuidDev})
	}
	if a.sys != "" {
		flags := noExecSuidDev
		if a.sys == "ro" {
			flags |= unix.MS_RDONLY
		}
		m = append(m, &configs.Mount{Source: "sysfs", Destination: "/sys", Device: "sysfs", Flags: flags})
	}
	if a.cgroup != "" {
		flags := noExecSuidDev | unix.MS_RELATIME
		if a.cgroup == "ro" {
			flags |= unix.MS_RDONLY
		}
		m = append(m, &configs.Mount{Source: "cgroup", Destination: "/sys/fs/cgroup", Device: "cgroup", Flags: flags})
	}
	return m
}

// mountFlags are the mount(8) options that are flags rather than data:
// flags to set and flags to clear.
var mountFlags = map[string]struct {
	set, clear int
}{
	"ro": {unix.MS_RDONLY, 0}, "rw": {0, unix.MS_RDONLY},
	"nosuid": {unix.MS_NOSUID, 0}, "suid": {0, unix.MS_NOSUID},
	"nodev": {unix.MS_NODEV, 0}, "dev": {0, unix.MS_NODEV},
	"noexec": {unix.MS_NOEXEC, 0}, "exec": {0, unix.MS_NOEXEC},
	"sync": {unix.MS_SYNCHRONOUS, 0}, "async": {0, unix.MS_SYNCHRONOUS},
	"dirsync": {unix.MS_DIRSYNC, 0},
	"mand":    {unix.MS_MANDLOCK, 0}, "nomand": {0, unix.MS_MANDLOCK},
	"noatime": {unix.MS_NOATIME, 0}, "atime": {0, unix.MS_NOATIME},
	"nodiratime": {unix.MS_NODIRATIME, 0}, "diratime": {0, unix.MS_NODIRATIME},
	"relatime": {unix.MS_RELATIME, 0}, "norelatime": {0, unix.MS_RELATIME},
	"strictatime": {unix.MS_STRICTATIME, 0}, "nostrictatime": {0, unix.MS_STRICTATIME},
	"bind": {unix.MS_BIND, 0}, "rbind": {unix.MS_BIND | unix.MS_REC, 0},
	"defaults": {0, 0},
}

var propagationFlags = map[string]int{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// mounts translates lxc.mount.entry lines. Targets are made absolute
// inside the rootfs (libcontainer keeps them from escaping it). Bind
// sources go through resolve. An "optional" bind whose source is missing
// is skipped, as in LXC. create=dir and create=file are accepted:
// libcontainer always creates a missing target, as a file when a bind
// source is a file and as a directory otherwise.
func mounts(entries []spec.Mount, resolve func(string) (string, error)) ([]*configs.Mount, error) {
	var out []*configs.Mount
	var errs []error
	for _, e := range entries {
		m := &configs.Mount{Source: e.Source, Device: e.FSType}
		optional := false
		var data []string
		for _, o := range e.Options {
			if f, ok := mountFlags[o]; ok {
				m.Flags = m.Flags&^f.clear | f.set
				continue
			}
			if p, ok := propagationFlags[o]; ok {
				m.PropagationFlags = append(m.PropagationFlags, p)
				continue
			}
			switch {
			case o == "optional":
				optional = true
			case o == "create=dir", o == "create=file":
			case o == "":
			default:
				data = append(data, o)
			}
		}
		target := path.Clean("/" + e.Target)
		m.Destination = target
		desc := fmt.Sprintf("mount.entry %s %s", e.Source, e.Target)
		if target == "/" {
			errs = append(errs, fmt.Errorf("%w: %s: target is the root", ErrInvalidSpec, desc))
			continue
		}
		if m.IsBind() {
			if m.Device == "" || m.Device == "none" {
				m.Device = "bind"
			}
			if len(data) > 0 {
				errs = append(errs, fmt.Errorf("%w: %s: bind mounts take no filesystem options (%s)", ErrInvalidSpec, desc, strings.Join(data, ",")))
				continue
			}
			if !filepath.IsAbs(e.Source) {
				errs = append(errs, fmt.Errorf("%w: %s: bind source is not absolute", ErrInvalidSpec, desc))
				continue
			}
			src := e.Source
			if resolve != nil {
				r, err := resolve(e.Source)
				if err != nil {
					if optional {
						continue
					}
					errs = append(errs, fmt.Errorf("%w: %s: resolve source: %v", ErrInvalidSpec, desc, err))
					continue
				}
				src = r
			}
			if _, err := os.Stat(src); err != nil {
				if optional {
					continue
				}
				errs = append(errs, fmt.Errorf("%w: %s: source: %v", ErrInvalidSpec, desc, err))
				continue
			}
			m.Source = src
		} else {
			if m.Device == "" || m.Device == "none" {
				errs = append(errs, fmt.Errorf("%w: %s: neither a bind mount nor a filesystem type", ErrInvalidSpec, desc))
				continue
			}
			m.Data = strings.Join(data, ",")
		}
		out = append(out, m)
	}
	return out, errors.Join(errs...)
}

// PrefixResolver returns a ResolveSource function that replaces the
// longest matching prefix of a path: with {"/volumes/web": "/storage/disks/
// rev/1/web"}, /volumes/web/docker--etc-nginx resolves to
// /storage/disks/rev/1/web/docker--etc-nginx. A prefix matches whole path
// elements only. Paths matching no prefix are returned unchanged, so host
// paths such as /etc/resolv.conf bind as written; a path under /volumes/
// that matches no prefix is an error.
func PrefixResolver(prefixes map[string]string) func(string) (string, error) {
	type pair struct{ from, to string }
	var list []pair
	for from, to := range prefixes {
		list = append(list, pair{path.Clean(from), to})
	}
	sort.Slice(list, func(i, j int) bool { return len(list[i].from) > len(list[j].from) })
	return func(p string) (string, error) {
		// Under /volumes/ the ".." are resolved inside the volume, not
		// lexically first, which could climb from a volume to the host.
		raw := p
		if strings.HasPrefix(p, "/volumes/") {
			raw = "/" + strings.Join(slices.DeleteFunc(strings.Split(p, "/"), func(s string) bool { return s == "" || s == "." }), "/")
		} else {
			raw = path.Clean(p)
		}
		for _, pr := range list {
			if raw == pr.from {
				return rootfs.ResolveIn(pr.to, "")
			}
			if rest, ok := strings.CutPrefix(raw, pr.from+"/"); ok {
				// The rest is resolved inside the volume root: ".." and
				// symlinks in the image stay in it.
				return rootfs.ResolveIn(pr.to, rest)
			}
		}
		if strings.HasPrefix(raw, "/volumes/") {
			return "", fmt.Errorf("no volume for %s", p)
		}
		return raw, nil
	}
}

// appArmorEnabled says whether the kernel enforces AppArmor. Without it, a
// profile is ignored, as LXC does.
// A variable for tests: this machine's kernel has no AppArmor.
var appArmorEnabled = func() bool {
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && len(b) > 0 && b[0] == 'Y'
}

// withSeccomp runs the container's command under the filter of prof: the
// command becomes "/proc/self/exe <command>..." with the filter in
// initshim.SeccompEnv, and the seccomp exec (initshim/seccomp_linux.c) of
// that binary loads the filter and executes the command as the same
// process. /proc is always mounted (baseMounts), so /proc/self/exe is
// there; it is the init binary itself, whichever mount namespace the
// container has.
func withSeccomp(t *Translated, prof *spec.Seccomp) error {
	prog, err := seccomp.Compile(prof)
	if err != nil {
		return err
	}
	raw := make([]byte, 0, 8*len(prog))
	for _, in := range prog {
		raw = binary.NativeEndian.AppendUint16(raw, in.Op)
		raw = append(raw, in.Jt, in.Jf)
		raw = binary.NativeEndian.AppendUint32(raw, in.K)
	}
	t.Env = append(t.Env, initshim.SeccompEnv+"="+hex.EncodeToString(raw))
	t.Args = append([]string{"/proc/self/exe"}, t.Args...)
	return nil
}

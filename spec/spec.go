// Package spec is the runtime-neutral description of one container: what to
// run, with which environment, mounts, capabilities, namespaces and limits.
//
// It is the meeting point of the state parser (which translates upstream's
// lxc.container.conf into it) and the container runtime (which turns it into a
// libcontainer config). Keeping it free of both lets each side be tested alone.
package spec

// Container is everything the runtime needs to know about a container besides
// its root filesystem, which the revision's storage provides.
type Container struct {
	// Args is the init command: argv[0] and its arguments. Empty means the
	// runtime default, /sbin/init, as upstream's LXC template.
	Args []string
	// Cwd is the working directory of the init process ("" = "/").
	Cwd string
	// UID and GID run the init process; nil means 0.
	UID, GID *uint32
	// Env holds KEY=VALUE pairs in the order they were declared; a later
	// duplicate key replaces an earlier one.
	Env []string
	// Hostname is the UTS name; "" lets the runtime use the container name.
	Hostname string
	// Mounts are applied in order after the runtime's own base mounts.
	Mounts []Mount
	// MountAuto lists LXC's automatic mounts ("proc", "sys:rw", "cgroup", ...).
	MountAuto []string
	// CapDrop and CapKeep are capability names without the CAP_ prefix, in
	// lower case as LXC writes them ("sys_admin"). CapKeep, when non-empty,
	// is the whole set to keep and wins over CapDrop, as in LXC. CapKeep
	// ["none"] (LXC's lxc.cap.keep = none) means keep no capability at all.
	CapDrop []string
	CapKeep []string
	// NoNewPrivileges is lxc.no_new_privs: execve never grants privileges
	// (setuid bits, file capabilities) to the container's processes.
	NoNewPrivileges bool
	// AppArmorProfile is lxc.apparmor.profile ("" or "unconfined": none).
	// As LXC, a profile on a kernel without AppArmor is ignored.
	AppArmorProfile string
	// Seccomp is lxc.seccomp.profile, read from the revision: the system
	// call filter the container's init is started under. nil: none.
	Seccomp *Seccomp
	// Unenforceable lists confinement the configuration asks for that the
	// runtime cannot enforce yet ("lxc.seccomp.profile: ..."): the
	// container is refused rather than run with less confinement than
	// asked.
	Unenforceable []string
	// NamespaceKeep lists namespaces shared with the host instead of
	// created ("net", "user", "ipc", ...). Upstream's template keeps
	// user, net and ipc.
	NamespaceKeep []string
	// Net is the static network configuration from lxc.net.N.* keys.
	Net []NetInterface
	// Cgroup holds resource limits by controller file name
	// ("memory.limit_in_bytes", "pids.max", "cpu.shares"), with the cgroup
	// version they were written for.
	Cgroup []CgroupSetting
	// DevicesAllow holds lxc.cgroup.devices.allow rules ("a", "c 1:3 rwm").
	DevicesAllow []string
	// DevicesDeny holds lxc.cgroup.devices.deny rules.
	DevicesDeny []string
	// TTYMax and PTYMax are LXC's lxc.tty.max and lxc.pty.max.
	TTYMax, PTYMax int
	// Rootfs is what lxc.rootfs.path said; the runtime resolves it against
	// the revision's volumes.
	Rootfs Rootfs
	// UIDMap and GIDMap are lxc.idmap's "u" and "g" ranges: the container
	// runs in a user namespace of its own with these mappings, so its root
	// is an unprivileged id on the host. Both empty: no user namespace.
	UIDMap []IDMap
	GIDMap []IDMap
}

// IDMap maps Count ids from ContainerID inside the container to HostID on
// the host, as one lxc.idmap line (and one line of /proc/PID/uid_map).
type IDMap struct {
	ContainerID, HostID, Count uint32
}

// Mount is one bind or filesystem mount inside the container.
type Mount struct {
	// Source is a host path (or a filesystem name such as "tmpfs").
	Source string
	// Target is the path inside the container, always relative to its root
	// and without a leading slash, as lxc.mount.entry writes it.
	Target string
	// FSType is "none" for bind mounts.
	FSType string
	// Options are the comma-separated mount options, split.
	Options []string
}

// NetInterface is one lxc.net.<index> block. HWAddr is lower case and may
// hold "xx" octets, which LXC randomises at start and so must the runtime.
type NetInterface struct {
	Index   int
	Type    string // veth, macvlan, empty, none, ...
	Link    string // host bridge or parent
	Name    string // name inside the container
	HWAddr  string
	IPv4    []string // CIDR addresses
	Gateway string   // IPv4 gateway
	Flags   string   // "up"
	MTU     int
}

// CgroupSetting is one lxc.cgroup.<key> or lxc.cgroup2.<key> line.
type CgroupSetting struct {
	Version int    // 1 or 2
	Key     string // e.g. "memory.limit_in_bytes"
	Value   string
}

// Rootfs is the parsed lxc.rootfs.path.
type Rootfs struct {
	// Type is "overlayfs", "dir" or "" when not given.
	Type string
	// Lower and Upper are the overlay layers as written (paths usually start
	// with /volumes/<name>/); Lower alone for a dir rootfs.
	Lower, Upper string
}

// Seccomp is a system call filter as LXC's profile formats 1 and 2 describe
// it, kept independent of the architecture: the runtime resolves names to
// numbers for the native architecture and its compat ABIs (i386 and x32 on
// x86_64, arm on arm64) when it compiles the filter.
type Seccomp struct {
	// Default is the action for a system call no rule matches.
	Default SeccompAction
	// Rules are tried in order; the first that matches decides.
	Rules []SeccompRule
	// NativeOnly is format 1: rules are numbers of the native
	// architecture, and a system call of any other ABI gets Default.
	NativeOnly bool
}

// SeccompRule is one line of a profile.
type SeccompRule struct {
	// Line is the rule's line in the profile, for error messages.
	Line int
	// Syscall is the system call's name, or its number in the native
	// architecture (format 1) as a decimal string.
	Syscall string
	// Arch is the profile's section the rule is in ("" before any
	// section, "all", "x86", "x86_64", "arm64", ...). A rule of a section
	// for another architecture family is left out, as LXC does.
	Arch   string
	Action SeccompAction
	// Args must all hold for the rule to match.
	Args []SeccompArg
}

// SeccompActionKind is what the kernel does with a matched system call.
type SeccompActionKind string

// The actions of LXC's profiles.
const (
	SeccompKill   SeccompActionKind = "kill"
	SeccompErrno  SeccompActionKind = "errno"
	SeccompAllow  SeccompActionKind = "allow"
	SeccompTrap   SeccompActionKind = "trap"
	SeccompNotify SeccompActionKind = "notify"
)

// SeccompAction is an action and, for errno, the error number returned.
type SeccompAction struct {
	Kind  SeccompActionKind
	Errno uint16
}

// SeccompArg compares argument Index (0-5) of the call with Value by Op:
// "==", "!=", "<", "<=", ">", ">=" (unsigned, 64 bits), or "&=", which
// holds when the argument ANDed with Mask equals Value.
type SeccompArg struct {
	Index       uint8
	Op          string
	Value, Mask uint64
}

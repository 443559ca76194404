package state

import (
	"encoding/json"
	"net/netip"

	"github.com/pantavisor/pv/spec"
)

// SpecSystem1 is the only state format this implementation runs.
const SpecSystem1 = "pantavisor-service-system@1"

// Goal is the status a container must reach for its group to be done.
type Goal string

// The status goals a group or container may declare.
const (
	GoalMounted Goal = "MOUNTED"
	GoalStarted Goal = "STARTED"
	GoalReady   Goal = "READY"
)

// RestartPolicy says what a failure of the container means for the device.
type RestartPolicy string

// The restart policies: a system container's failure reboots (or rolls back)
// the device; a container's failure stays with the container.
const (
	RestartSystem    RestartPolicy = "system"
	RestartContainer RestartPolicy = "container"
)

// RecoveryPolicy is auto_recovery.policy.
type RecoveryPolicy string

// The auto-recovery policies of SPEC §3.
const (
	RecoveryNo            RecoveryPolicy = "no"
	RecoveryOnFailure     RecoveryPolicy = "on-failure"
	RecoveryAlways        RecoveryPolicy = "always"
	RecoveryUnlessStopped RecoveryPolicy = "unless-stopped"
)

// Persistence says where a container's writable storage lives.
type Persistence string

// The persistence kinds of run.json storage and device.json volumes.
const (
	PersistBoot      Persistence = "boot"
	PersistRevision  Persistence = "revision"
	PersistPermanent Persistence = "permanent"
)

// State is one parsed revision: the model every other package works from.
// It is built once by Parse and not modified afterwards.
type State struct {
	// Spec is the #spec value.
	Spec string
	// BSP is nil in appengine mode, where the board support package is not
	// used, and when the state has no bsp/run.json.
	BSP *BSP
	// Drivers are the driver aliases of bsp/drivers.json (nil if absent).
	Drivers *Drivers
	// HasDeviceJSON says whether groups and disks came from device.json
	// (true) or from the legacy groups.json/disks.json or the defaults.
	HasDeviceJSON bool
	// DefaultGroups is set when neither device.json nor groups.json exists:
	// the four built-in groups apply, with upstream's runlevel assignment.
	DefaultGroups bool
	// Groups in start order.
	Groups []Group
	Disks  []Disk
	// Volumes are the BSP-level volumes of device.json (name → volume).
	Volumes map[string]Volume
	// Pools are the IPAM pools of device.json network.pools, sorted by name.
	Pools []Pool
	// Ingress rules of device.json, in declaration order.
	Ingress []IngressRule
	// Containers sorted by name.
	Containers []*Container
	// Objects maps every state key that names an object to its sha256.
	Objects map[string]string
	// JSONs holds the inline JSON documents that are not interpreted here
	// (e.g. _config/x/y.json, bsp/build.json); they are written to the trail
	// as files.
	JSONs map[string]json.RawMessage
	// Warnings found while parsing; they never make a state invalid.
	Warnings []Problem
}

// BSP is bsp/run.json: the board's boot assets.
type BSP struct {
	Linux, Initrd, FDT, FIT, RPiAB string
	Firmware, Modules              string
	InitrdConfig                   string
	Addons                         []string
}

// Drivers is bsp/drivers.json: alias → module lines, for the keys upstream
// reads ("all" and "fitconfig:<name>"; others are kept for completeness).
type Drivers struct {
	Sections map[string]map[string][]string
}

// Aliases returns every alias name defined in any section.
func (d *Drivers) Aliases() map[string]bool {
	out := map[string]bool{}
	if d == nil {
		return out
	}
	for _, sec := range d.Sections {
		for a := range sec {
			out[a] = true
		}
	}
	return out
}

// Group is one entry of device.json groups (or groups.json).
type Group struct {
	Name          string
	Description   string
	StatusGoal    Goal
	RestartPolicy RestartPolicy
	// Timeout in seconds for members to reach their goal.
	Timeout int
	// TimeoutUnset says the group declares no timeout: Timeout is then
	// PV_UPDATER_GOALS_TIMEOUT as it was at parse time, which the device
	// reads again when the group starts (it may change while it runs).
	TimeoutUnset bool
}

// Disk is one entry of device.json disks/disks_v2 (or disks.json).
type Disk struct {
	Name             string
	Path             string
	Type             string
	Format           string
	MountTarget      string
	MountOptions     string
	FormatOptions    string
	Provision        string
	ProvisionOptions string
	UUID             string
	Default          bool
}

// Volume is a BSP-level volume of device.json or a storage entry of run.json.
type Volume struct {
	Persistence Persistence
	Disk        string
}

// PoolType is the kind of IPAM pool.
type PoolType string

// The pool types.
const (
	PoolBridge  PoolType = "bridge"
	PoolMacvlan PoolType = "macvlan"
)

// Pool is one IPAM pool of device.json network.pools.
type Pool struct {
	Name    string
	Type    PoolType
	Bridge  string
	Parent  string
	Subnet  netip.Prefix
	Gateway netip.Addr
	NAT     bool
}

// IngressRule is one device.json ingress entry: a listener on the device
// that forwards to a provider container's exported service.
type IngressRule struct {
	Name     string
	Type     string // tcp or http
	External string // as written
	// Addr is the listen address ("0.0.0.0:8080" for ":8080" too).
	Addr netip.AddrPort
	// Prefix is the HTTP path prefix ("/" when absent), cleaned as the
	// router cleans it: no trailing slash ("/api/" is "/api"). Empty for
	// tcp.
	Prefix   string
	Provider string
	Service  string
}

// Container is one <name>/run.json with everything attached to it.
type Container struct {
	Name       string
	Type       string
	Config     string
	RootVolume string
	Volumes    []string
	// Group is the resolved group name; GroupSet says run.json named it.
	Group    string
	GroupSet bool
	// StatusGoal and RestartPolicy are resolved: the container's own value
	// or its group's.
	StatusGoal    Goal
	RestartPolicy RestartPolicy
	// Roles as resolved: ["mgmt"] when run.json has no roles key, [] for
	// ["nobody"].
	Roles     []string
	AutoModFW bool
	Drivers   ContainerDrivers
	// Storage maps a volume name (e.g. "lxc-overlay",
	// "docker--etc-nginx") to its persistence.
	Storage map[string]Volume
	// Logs are the logger configs; nil means upstream's defaults.
	Logs []map[string]string
	// Export is set when run.json has an "exports" key.
	Export       bool
	Requires     []ServiceRequirement
	Optional     []ServiceRequirement
	AutoRecovery AutoRecovery
	// HasAutoRecovery says run.json had an auto_recovery object; without it
	// a container-policy container gets the legacy floor-backoff restarts.
	HasAutoRecovery bool
	Network         *Network
	// Exports come from <name>/services.json.
	Exports []ServiceExport
	// Objects maps the container's state keys (e.g. "web/root.squashfs",
	// "_config/web/etc/x") to their sha256.
	Objects map[string]string
	// JSONs maps the container's inline documents that are not
	// interpreted (e.g. "_config/web/etc/app.json") to their bytes, as
	// the trail holds them.
	JSONs map[string]json.RawMessage
	// LXC is the translated lxc.container.conf; only set when the trail's
	// objects were available to read it.
	LXC *spec.Container
}

// ContainerDrivers are run.json drivers: aliases of bsp/drivers.json.
type ContainerDrivers struct {
	Required, Optional, Manual []string
}

// AutoRecovery is run.json auto_recovery.
type AutoRecovery struct {
	Policy RecoveryPolicy
	// MaxRetries 0 means unlimited.
	MaxRetries int
	// RetryDelay in seconds before the first retry.
	RetryDelay int
	// BackoffFactor multiplies the delay per retry; ≤ 1 keeps it constant.
	BackoffFactor float64
	// ResetWindow in seconds: a run longer than this resets the retry
	// counter (0 = never).
	ResetWindow int
}

// NetworkMode is run.json network.mode.
type NetworkMode string

// The network modes: host shares the device's network namespace; pool gives
// the container its own with an address from an IPAM pool.
const (
	NetHost NetworkMode = "host"
	NetPool NetworkMode = "pool"
)

// Network is run.json network.
type Network struct {
	Mode     NetworkMode
	Pool     string
	Hostname string
	// IP is the static address (invalid when the pool allocates one).
	IP  netip.Addr
	MAC string
	// ipKey is the key the address was read from ("ip" or its alias
	// "static_ip"), so errors name what the user wrote.
	ipKey string
}

// ServiceRequirement is one run.json services.required/optional entry.
type ServiceRequirement struct {
	Name      string
	Type      string
	Provider  string
	Role      string
	Interface string
	Target    string
}

// ServiceExport is one services.json entry of a provider.
type ServiceExport struct {
	Name   string
	Type   string
	Socket string
	Port   int
}

// Container returns the container with that name, or nil.
func (s *State) Container(name string) *Container {
	for _, c := range s.Containers {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Group returns the group with that name, or nil.
func (s *State) Group(name string) *Group {
	for i := range s.Groups {
		if s.Groups[i].Name == name {
			return &s.Groups[i]
		}
	}
	return nil
}

// Pool returns the pool with that name, or nil.
func (s *State) Pool(name string) *Pool {
	for i := range s.Pools {
		if s.Pools[i].Name == name {
			return &s.Pools[i]
		}
	}
	return nil
}

// DefaultGroupList is upstream's built-in /etc/pantavisor/defaults/groups.json,
// used when a state has neither device.json nor groups.json.
func DefaultGroupList() []Group {
	return []Group{
		{Name: "data", RestartPolicy: RestartSystem, StatusGoal: GoalMounted, Timeout: 30},
		{Name: "root", RestartPolicy: RestartSystem, StatusGoal: GoalStarted, Timeout: 30},
		{Name: "platform", RestartPolicy: RestartSystem, StatusGoal: GoalStarted, Timeout: 30},
		{Name: "app", RestartPolicy: RestartContainer, StatusGoal: GoalStarted, Timeout: 30},
	}
}

// DefaultGroupTimeout is PV_UPDATER_GOALS_TIMEOUT's default, used for a group
// that declares no timeout.
const DefaultGroupTimeout = 120

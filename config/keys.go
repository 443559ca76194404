package config

import (
	"math"
	"slices"
	"strings"
)

// Key names. Use these rather than string literals so that a typo is a
// compile error; TestKeyNamesUsedAreRegistered checks the literals that
// remain in the module.
const (
	PVUpdaterCommitDelay      = "PV_UPDATER_COMMIT_DELAY"
	PVUpdaterGoalsTimeout     = "PV_UPDATER_GOALS_TIMEOUT"
	PHUpdaterNetworkTimeout   = "PH_UPDATER_NETWORK_TIMEOUT"
	PHUpdaterInterval         = "PH_UPDATER_INTERVAL"
	PVRevisionRetries         = "PV_REVISION_RETRIES"
	PVUpdaterUseTmpObjects    = "PV_UPDATER_USE_TMP_OBJECTS"
	PVLogLevel                = "PV_LOG_LEVEL"
	PVLogServerOutputs        = "PV_LOG_SERVER_OUTPUTS"
	PVLogMaxSize              = "PV_LOG_MAXSIZE"
	PVLogDirMaxSize           = "PV_LOG_DIR_MAXSIZE"
	PVLogRotateFactor         = "PV_LOG_ROTATE_FACTOR"
	PVLogHysteresisFactor     = "PV_LOG_HYSTERESIS_FACTOR"
	PVLogDir                  = "PV_LOG_DIR"
	PVLXCLogLevel             = "PV_LXC_LOG_LEVEL"
	PVLogLoggers              = "PV_LOG_LOGGERS"
	PVLogCapture              = "PV_LOG_CAPTURE"
	PVLogCaptureDmesg         = "PV_LOG_CAPTURE_DMESG"
	PVBootloaderType          = "PV_BOOTLOADER_TYPE"
	PVBootloaderMTDOnly       = "PV_BOOTLOADER_MTD_ONLY"
	PVBootloaderUbootABAName  = "PV_BOOTLOADER_UBOOTAB_A_NAME"
	PVBootloaderUbootABBName  = "PV_BOOTLOADER_UBOOTAB_B_NAME"
	PVSystemInitMode          = "PV_SYSTEM_INIT_MODE"
	PVSystemRunDir            = "PV_SYSTEM_RUNDIR"
	PVSystemConfDir           = "PV_SYSTEM_CONFDIR"
	PVSystemLibDir            = "PV_SYSTEM_LIBDIR"
	PVSystemEtcPantavisorDir  = "PV_SYSTEM_ETCPANTAVISORDIR"
	PVControlRemote           = "PV_CONTROL_REMOTE"
	PVControlRemoteAlways     = "PV_CONTROL_REMOTE_ALWAYS"
	PVDebugShell              = "PV_DEBUG_SHELL"
	PVDebugSSH                = "PV_DEBUG_SSH"
	PVSecurebootMode          = "PV_SECUREBOOT_MODE"
	PVSecurebootTruststore    = "PV_SECUREBOOT_TRUSTSTORE"
	PVSecurebootOEMTruststore = "PV_SECUREBOOT_OEM_TRUSTSTORE"
	PVWDTMode                 = "PV_WDT_MODE"
	PVWDTTimeout              = "PV_WDT_TIMEOUT"
	PVStorageGCReserved       = "PV_STORAGE_GC_RESERVED"
	PVStorageGCThreshold      = "PV_STORAGE_GC_THRESHOLD"
	PVStorageGCDeferTime      = "PV_STORAGE_GC_THRESHOLD_DEFERTIME"
	PVStorageWait             = "PV_STORAGE_WAIT"
	PVNetBrDev                = "PV_NET_BRDEV"
	PVNetBrAddress4           = "PV_NET_BRADDRESS4"
	PVNetBrMask4              = "PV_NET_BRMASK4"
	PHCredsHost               = "PH_CREDS_HOST"
	PHCredsPort               = "PH_CREDS_PORT"
	PVAutoRecoveryMaxDelay    = "PV_AUTO_RECOVERY_MAX_DELAY"
	PVPolicy                  = "PV_POLICY"
	PVOEMName                 = "PV_OEM_NAME"
	PVStorageMntPoint         = "PV_STORAGE_MNTPOINT"
	PVStorageDevice           = "PV_STORAGE_DEVICE"
	PVStorageFSType           = "PV_STORAGE_FSTYPE"
	PVNetIsolation            = "PV_NET_ISOLATION"
	PVNetIptables             = "PV_NET_IPTABLES"
	sysctlPrefix              = "PV_SYSCTL_"
	legacySysctlPrefix        = "sysctl."
)

// Kind is how a key's value is validated, normalised and typed.
type Kind uint8

// The kinds. Every value is stored as its normalised string; the kind says
// which strings are valid and how the typed accessors read them.
const (
	// KindString is any text without NUL or line breaks.
	KindString Kind = iota
	// KindInt is a decimal integer within the key's [Min, Max].
	KindInt
	// KindBool is upstream's 0/1: any decimal integer (non-zero is true) or
	// true/false; normalised to "0" or "1".
	KindBool
	// KindEnum is one of the key's Values, matched case-insensitively.
	KindEnum
	// KindSize is a byte count as a plain decimal integer.
	KindSize
	// KindSeconds is a duration as a plain decimal count of seconds.
	KindSeconds
	// KindPath is an absolute file system path.
	KindPath
	// KindName is a bare file name: it becomes a path component, so '/',
	// "..", "." and the like are refused. Empty means unset.
	KindName
	// KindIPv4 is a dotted-quad IPv4 address.
	KindIPv4
	// KindList is a comma-separated subset of the key's Values.
	KindList
)

var kindNames = [...]string{
	KindString:  "string",
	KindInt:     "int",
	KindBool:    "bool",
	KindEnum:    "enum",
	KindSize:    "size",
	KindSeconds: "seconds",
	KindPath:    "path",
	KindName:    "name",
	KindIPv4:    "ipv4",
	KindList:    "list",
}

// String returns the kind's lower-case name.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(?)"
}

// numeric reports whether the kind's value is read with Int.
func (k Kind) numeric() bool {
	return k == KindInt || k == KindSize || k == KindSeconds
}

// KeyInfo describes one configuration key. The table is fixed at build
// time; callers get copies and cannot change it.
type KeyInfo struct {
	// Name is the canonical upper-case key, e.g. "PV_LOG_LEVEL".
	Name string
	// Aliases are the legacy dotted names that are translated to Name, the
	// one GET /config uses first (e.g. "log.level").
	Aliases []string
	// Kind says how values are checked.
	Kind Kind
	// Default is the normalised value at LevelDefault.
	Default string
	// Allowed is the mask of levels that may set the key.
	Allowed Level
	// Values lists the accepted words for KindEnum and KindList, in
	// upstream's enum order: GET /config reports an enum as its index and a
	// list as a mask with bit i for Values[i].
	Values []string
	// Min and Max bound numeric kinds (inclusive). Max never exceeds
	// math.MaxInt32 so that Int is exact on 32-bit devices too.
	Min, Max int
}

// Shorthands for the table below.
const (
	pvOEMRun = AllowPV | LevelOEM | AllowRun
	phOEMRun = AllowPH | LevelOEM | AllowRun
	pvOEM    = AllowPV | LevelOEM
	phOEM    = AllowPH | LevelOEM
	maxInt   = math.MaxInt32
)

// table is reference §9.2, upstream's PV_STORAGE_GC_THRESHOLD_DEFERTIME
// that §9.2 leaves out, and the keys this project adds
// (PV_AUTO_RECOVERY_MAX_DELAY, PV_POLICY, PV_OEM_NAME, PV_STORAGE_MNTPOINT).
// Aliases are filled in by init with the scheme alias (prefix dropped,
// lower case, '_' → '.'); an explicit alias is upstream's spelling where it
// differs from the scheme, and stays first so GET /config keeps upstream's
// name.
var table = []KeyInfo{
	{Name: PVUpdaterCommitDelay, Kind: KindSeconds, Default: "25", Allowed: pvOEMRun, Max: maxInt},
	{Name: PVUpdaterGoalsTimeout, Kind: KindSeconds, Default: "120", Allowed: pvOEMRun, Max: maxInt},
	{Name: PHUpdaterNetworkTimeout, Kind: KindSeconds, Default: "120", Allowed: phOEMRun, Max: maxInt,
		Aliases: []string{"updater.network_timeout"}},
	{Name: PHUpdaterInterval, Kind: KindSeconds, Default: "60", Allowed: phOEMRun, Max: maxInt},
	{Name: PVRevisionRetries, Kind: KindInt, Default: "10", Allowed: pvOEMRun, Max: maxInt},
	{Name: PVUpdaterUseTmpObjects, Kind: KindBool, Default: "0", Allowed: pvOEMRun,
		Aliases: []string{"updater.use_tmp_objects"}},
	// 0=FATAL … 5=ALL.
	{Name: PVLogLevel, Kind: KindInt, Default: "0", Allowed: pvOEMRun, Max: 5},
	// Bit order is upstream's log_server_output_mask_t. "update" is always
	// on upstream, so normalisation adds it.
	{Name: PVLogServerOutputs, Kind: KindList, Default: "filetree,update", Allowed: pvOEMRun,
		Values: []string{"nullsink", "singlefile", "filetree", "stdout", "stdout.containers",
			"stdout.pantavisor", "stdout_direct", "update"}},
	{Name: PVLogMaxSize, Kind: KindSize, Default: "2097152", Allowed: pvOEMRun, Max: maxInt},
	{Name: PVLogDirMaxSize, Kind: KindSize, Default: "16777216", Allowed: pvOEMRun, Max: maxInt},
	{Name: PVLogRotateFactor, Kind: KindInt, Default: "5", Allowed: pvOEMRun, Max: maxInt},
	{Name: PVLogHysteresisFactor, Kind: KindInt, Default: "4", Allowed: pvOEMRun, Max: maxInt},
	{Name: PVLogDir, Kind: KindPath, Default: "/storage/logs/", Allowed: AllowPV},
	// LXC's levels: 0=TRACE … 8=FATAL.
	{Name: PVLXCLogLevel, Kind: KindInt, Default: "2", Allowed: pvOEM, Max: 8},
	{Name: PVLogLoggers, Kind: KindBool, Default: "1", Allowed: pvOEM},
	{Name: PVLogCapture, Kind: KindBool, Default: "1", Allowed: pvOEM},
	{Name: PVLogCaptureDmesg, Kind: KindBool, Default: "1", Allowed: pvOEM},
	// Upstream's bootloader_t order, then ours.
	{Name: PVBootloaderType, Kind: KindEnum, Default: "uboot", Allowed: AllowPV,
		Values: []string{"uboot", "uboot-pvk", "grub", "rpiab", "uboot-ab", "uboot-env", "appengine"}},
	{Name: PVBootloaderMTDOnly, Kind: KindBool, Default: "0", Allowed: AllowPV,
		Aliases: []string{"bootloader.mtd_only"}},
	{Name: PVBootloaderUbootABAName, Kind: KindString, Default: "fitA", Allowed: AllowPV},
	{Name: PVBootloaderUbootABBName, Kind: KindString, Default: "fitB", Allowed: AllowPV},
	{Name: PVSystemInitMode, Kind: KindEnum, Default: "embedded", Allowed: AllowPV,
		Values: []string{"embedded", "standalone", "appengine"}},
	{Name: PVSystemRunDir, Kind: KindPath, Default: "/run/pantavisor/pv", Allowed: AllowPV},
	{Name: PVSystemConfDir, Kind: KindPath, Default: "/configs", Allowed: AllowPV},
	{Name: PVSystemLibDir, Kind: KindPath, Default: "/lib", Allowed: AllowPV},
	{Name: PVSystemEtcPantavisorDir, Kind: KindPath, Default: "/etc/pantavisor", Allowed: AllowPV},
	{Name: PVControlRemote, Kind: KindBool, Default: "1", Allowed: pvOEM},
	{Name: PVControlRemoteAlways, Kind: KindBool, Default: "0", Allowed: pvOEM},
	{Name: PVDebugShell, Kind: KindBool, Default: "1", Allowed: AllowPV},
	{Name: PVDebugSSH, Kind: KindBool, Default: "1", Allowed: pvOEMRun},
	{Name: PVSecurebootMode, Kind: KindEnum, Default: "lenient", Allowed: AllowPV,
		Values: []string{"disabled", "audit", "lenient", "strict"}},
	// The trust stores are <PV_SYSTEM_ETCPANTAVISORDIR>/pvs/trust/<name>.crt.
	{Name: PVSecurebootTruststore, Kind: KindName, Default: "ca-certificates", Allowed: AllowPV},
	{Name: PVSecurebootOEMTruststore, Kind: KindName, Default: "ca-oem-certificates", Allowed: AllowPV},
	{Name: PVWDTMode, Kind: KindEnum, Default: "shutdown", Allowed: AllowPV,
		Values: []string{"disabled", "shutdown", "startup", "always"}},
	{Name: PVWDTTimeout, Kind: KindSeconds, Default: "15", Allowed: AllowPV, Max: maxInt},
	// Percent of the storage size.
	{Name: PVStorageGCReserved, Kind: KindInt, Default: "5", Allowed: pvOEMRun, Max: 100},
	{Name: PVStorageGCThreshold, Kind: KindInt, Default: "0", Allowed: pvOEMRun, Max: 100},
	// Upstream's: no automatic GC within this long after the last upload
	// (an object or a step), and what was uploaded within it is kept.
	{Name: PVStorageGCDeferTime, Kind: KindSeconds, Default: "600", Allowed: pvOEMRun, Max: maxInt},
	{Name: PVStorageWait, Kind: KindSeconds, Default: "5", Allowed: AllowPV, Max: maxInt},
	// Legacy bridge settings; IPAM does not use them.
	{Name: PVNetBrDev, Kind: KindString, Default: "lxcbr0", Allowed: pvOEM},
	{Name: PVNetBrAddress4, Kind: KindIPv4, Default: "10.0.3.1", Allowed: pvOEM},
	{Name: PVNetBrMask4, Kind: KindIPv4, Default: "255.255.255.0", Allowed: pvOEM},
	{Name: PHCredsHost, Kind: KindString, Default: "api.pantahub.com", Allowed: phOEM},
	{Name: PHCredsPort, Kind: KindInt, Default: "443", Allowed: phOEM, Min: 1, Max: 65535},
	// Ours: the cap of the auto-recovery backoff delay.
	{Name: PVAutoRecoveryMaxDelay, Kind: KindSeconds, Default: "300", Allowed: pvOEMRun, Max: maxInt},
	// The policy and OEM names become path components of the policy file
	// and of the OEM config, hence KindName.
	{Name: PVPolicy, Kind: KindName, Default: "", Allowed: AllowPV},
	{Name: PVOEMName, Kind: KindName, Default: "", Allowed: AllowPV},
	{Name: PVStorageMntPoint, Kind: KindPath, Default: "/storage", Allowed: AllowPV},
	// Embedded mode: the block device mounted at PV_STORAGE_MNTPOINT
	// (waited for up to PV_STORAGE_WAIT); empty means storage is already
	// there (a directory of the initramfs, or mounted by an earlier stage).
	{Name: PVStorageDevice, Kind: KindString, Default: "", Allowed: AllowPV},
	{Name: PVStorageFSType, Kind: KindString, Default: "ext4", Allowed: AllowPV},
	// Ours: IPAM pools are isolated from each other (FORWARD drop between
	// their bridges) unless this is 0.
	{Name: PVNetIsolation, Kind: KindBool, Default: "1", Allowed: pvOEM},
	// Ours: the iptables backend for NAT and isolation: the system's
	// iptables, or the nf_tables or legacy one explicitly.
	{Name: PVNetIptables, Kind: KindEnum, Default: "auto", Allowed: pvOEM, Values: []string{"auto", "nft", "legacy"}},
}

// byName maps the upper-cased canonical name, byAlias the lower-cased
// alias, to an index in table. Both are built once by init and only read
// afterwards, so sharing them between goroutines is safe.
var (
	byName  = map[string]int{}
	byAlias = map[string]int{}
)

func init() {
	for i := range table {
		k := &table[i]
		if s := schemeAlias(k.Name); !slices.Contains(k.Aliases, s) {
			k.Aliases = append(k.Aliases, s)
		}
		byName[strings.ToUpper(k.Name)] = i
		for _, a := range k.Aliases {
			byAlias[strings.ToLower(a)] = i
		}
	}
}

// schemeAlias derives the legacy dotted name of a key: "PV_LOG_LEVEL" →
// "log.level", "PH_CREDS_HOST" → "creds.host".
func schemeAlias(name string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(name, "PV_"), "PH_")
	return strings.ReplaceAll(strings.ToLower(s), "_", ".")
}

// resolve finds a key by canonical name or legacy alias, both
// case-insensitively. legacy is true when an alias matched, so the caller
// can report the translation.
func resolve(name string) (idx int, legacy, ok bool) {
	if i, ok := byName[strings.ToUpper(name)]; ok {
		return i, false, true
	}
	if i, ok := byAlias[strings.ToLower(name)]; ok {
		return i, true, true
	}
	return 0, false, false
}

// Keys returns every registered key, sorted by name.
func Keys() []KeyInfo {
	out := make([]KeyInfo, len(table))
	for i, k := range table {
		out[i] = k.clone()
	}
	slices.SortFunc(out, func(a, b KeyInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Lookup returns the key that name denotes, by canonical name or legacy
// alias, case-insensitively.
func Lookup(name string) (KeyInfo, bool) {
	i, _, ok := resolve(name)
	if !ok {
		return KeyInfo{}, false
	}
	return table[i].clone(), true
}

func (k KeyInfo) clone() KeyInfo {
	k.Aliases = slices.Clone(k.Aliases)
	k.Values = slices.Clone(k.Values)
	return k
}

// isSysctl reports whether name is a sysctl setting rather than a key:
// "PV_SYSCTL_KERNEL_CORE_PATTERN" or the legacy "sysctl.kernel.core_pattern".
func isSysctl(name string) bool {
	_, _, ok := SysctlName(name)
	return ok
}

// SysctlName is what follows the prefix of a sysctl setting's key (in any
// case): "KERNEL_CORE_PATTERN" of PV_SYSCTL_KERNEL_CORE_PATTERN, or
// "kernel.core_pattern" of the legacy sysctl.kernel.core_pattern, for
// which legacy is set (its words are separated by dots, not
// underscores). ok is false for any other key.
func SysctlName(key string) (name string, legacy, ok bool) {
	switch {
	case len(key) > len(sysctlPrefix) && hasPrefixFold(key, sysctlPrefix):
		return key[len(sysctlPrefix):], false, true
	case len(key) > len(legacySysctlPrefix) && hasPrefixFold(key, legacySysctlPrefix):
		return key[len(legacySysctlPrefix):], true, true
	}
	return "", false, false
}

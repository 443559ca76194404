package config

import (
	"fmt"
	"math/bits"
	"strings"
)

// Level is a configuration layer. Levels are single bits with upstream's
// values so that a set of allowed levels is a bit mask and precedence is a
// plain numeric comparison: a write at level L replaces a value only when L
// is at least the level that set it.
type Level uint16

// The levels, from lowest to highest precedence. The bit values are
// upstream's (reference §9.1); the comment gives String's name, which is
// upstream's "modified" string in GET /config2.
const (
	LevelDefault   Level = 0       // "default": built into the key table
	LevelArgs      Level = 1 << 0  // "args": the binary's own arguments (SetArgs)
	LevelPVConf    Level = 1 << 1  // "pv conf file": pantavisor.config
	LevelPHConf    Level = 1 << 2  // "ph conf file": pantahub.config
	LevelPHClient  Level = 1 << 3  // "ph client": unused, kept for the bit value
	LevelPolicy    Level = 1 << 4  // "policy": <etc>/policies/<PV_POLICY>.config
	LevelOEM       Level = 1 << 5  // "oem config": the revision's OEM config
	LevelPVCmdline Level = 1 << 6  // "pv cmdline": kernel cmdline pv_* tokens
	LevelPHCmdline Level = 1 << 7  // "ph cmdline": kernel cmdline ph_* tokens
	LevelEnv       Level = 1 << 8  // "env": PV_*/PH_* environment variables
	LevelMeta      Level = 1 << 9  // "metadata": user-meta written at runtime
	LevelCmd       Level = 1 << 10 // "command": control-socket commands
)

// Allowed-level groups of the key table (reference §9.1). A key's allowed
// set is a union of these and LevelOEM.
const (
	// AllowPV is where Pantavisor's own keys may be set.
	AllowPV = LevelPVConf | LevelPolicy | LevelPVCmdline | LevelEnv
	// AllowPH is where Pantahub client keys may be set.
	AllowPH = LevelPHConf | LevelPolicy | LevelPHCmdline | LevelEnv
	// AllowRun is the runtime layers: user-meta and commands.
	AllowRun = LevelMeta | LevelCmd
)

// levelNames is indexed by bit position. The names are upstream's, so that
// GET /config2 serves the same "modified" strings; the second column is the
// constant-style name ParseLevel also accepts.
var levelNames = [...]struct{ name, ident string }{
	{"args", "ARGS"},
	{"pv conf file", "PV_CONF"},
	{"ph conf file", "PH_CONF"},
	{"ph client", "PH_CLIENT"},
	{"policy", "POLICY"},
	{"oem config", "OEM"},
	{"pv cmdline", "PV_CMDLINE"},
	{"ph cmdline", "PH_CMDLINE"},
	{"env", "ENV"},
	{"metadata", "META"},
	{"command", "CMD"},
}

// allLevels is the mask of every defined non-default level.
const allLevels = Level(1<<len(levelNames)) - 1

// String returns the level's name: "default", "args", "pv conf file",
// "ph conf file", "ph client", "policy", "oem config", "pv cmdline",
// "ph cmdline", "env", "metadata" or "command". A mask of several levels is
// rendered as their names joined by "|", lowest first, so that allowed sets
// read well in error messages.
func (l Level) String() string {
	if l == LevelDefault {
		return "default"
	}
	var parts []string
	for m := l; m != 0; m &= m - 1 {
		i := bits.TrailingZeros16(uint16(m))
		if i < len(levelNames) {
			parts = append(parts, levelNames[i].name)
		} else {
			parts = append(parts, fmt.Sprintf("level(%#x)", uint16(1)<<i))
		}
	}
	return strings.Join(parts, "|")
}

// single reports whether l is exactly one defined level (or the default).
func (l Level) single() bool {
	return l == LevelDefault || (l&allLevels == l && l&(l-1) == 0)
}

// MarshalText encodes the level as its String name, which makes a Value
// marshal to upstream's GET /config2 shape.
func (l Level) MarshalText() ([]byte, error) {
	return []byte(l.String()), nil
}

// UnmarshalText is the inverse of MarshalText; it accepts what ParseLevel
// accepts.
func (l *Level) UnmarshalText(b []byte) error {
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// ParseLevel turns a single level name back into a Level. It accepts the
// String names ("pv conf file") and the constant-style names ("PV_CONF",
// "pv_conf"), case-insensitively.
func ParseLevel(s string) (Level, error) {
	t := strings.TrimSpace(s)
	if strings.EqualFold(t, "default") {
		return LevelDefault, nil
	}
	for i, n := range levelNames {
		if strings.EqualFold(t, n.name) || strings.EqualFold(t, n.ident) {
			return Level(1) << i, nil
		}
	}
	return 0, fmt.Errorf("parse level %q: unknown level", s)
}

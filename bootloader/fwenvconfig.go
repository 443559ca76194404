package bootloader

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// DefaultFwEnvConfig is where fw_printenv and fw_setenv look for the
// location of the U-Boot environment.
const DefaultFwEnvConfig = "/etc/fw_env.config"

// maxEnvSize bounds an environment copy: real ones are 8 to 256 KiB, and a
// mistyped size must not make us allocate gigabytes.
const maxEnvSize = 16 << 20

// LoadFwEnvConfig reads an fw_env.config file (ParseFwEnvConfig).
func LoadFwEnvConfig(path string) (UbootEnv, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return UbootEnv{}, fmt.Errorf("read fw_env.config: %w", err)
	}
	u, err := ParseFwEnvConfig(data)
	if err != nil {
		return UbootEnv{}, fmt.Errorf("read fw_env.config %s: %w", path, err)
	}
	return u, nil
}

// ParseFwEnvConfig reads the lines of an fw_env.config file as libubootenv
// does: "device offset size [sector-size [sectors [no-lock]]]", one line per
// copy, two lines for a redundant environment; lines starting with '#' are
// comments. The offset is a C integer (0x… hex, 0… octal, else decimal;
// negative counts from the end of a block device); the sizes are hex with
// or without 0x, so "8192" means 0x8192. Sector sizes and counts matter to
// flash only and are checked, not used. Where libubootenv skips a line it
// cannot read or a third copy, this refuses it.
func ParseFwEnvConfig(data []byte) (UbootEnv, error) {
	var u UbootEnv
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 || len(f) > 6 {
			return UbootEnv{}, fmt.Errorf("line %d: want device offset size [sector-size [sectors [no-lock]]], got %d fields", n+1, len(f))
		}
		c := EnvCopy{Device: f[0]}
		var err error
		if c.Offset, err = parseCInt(f[1]); err != nil {
			return UbootEnv{}, fmt.Errorf("line %d: offset %q: %w", n+1, f[1], err)
		}
		size, err := parseHex(f[2])
		if err != nil {
			return UbootEnv{}, fmt.Errorf("line %d: size %q: %w", n+1, f[2], err)
		}
		if size == 0 || size > maxEnvSize {
			return UbootEnv{}, fmt.Errorf("line %d: size %#x: want 1 to %#x bytes", n+1, size, maxEnvSize)
		}
		c.Size = int64(size)
		for i, name := range []string{"sector size", "sector count"} {
			if len(f) > 3+i {
				if _, err := parseHex(f[3+i]); err != nil {
					return UbootEnv{}, fmt.Errorf("line %d: %s %q: %w", n+1, name, f[3+i], err)
				}
			}
		}
		if len(f) == 6 && f[5] != "0" && f[5] != "1" {
			return UbootEnv{}, fmt.Errorf("line %d: no-lock %q: want 0 or 1", n+1, f[5])
		}
		if len(u.Copies) == 2 {
			return UbootEnv{}, fmt.Errorf("line %d: a third copy: an environment has one or two", n+1)
		}
		u.Copies = append(u.Copies, c)
	}
	if err := u.check(); err != nil {
		return UbootEnv{}, err
	}
	return u, nil
}

// parseCInt reads an integer as C's strtoll with base 0 does.
func parseCInt(s string) (int64, error) {
	neg := false
	if rest, ok := strings.CutPrefix(s, "-"); ok {
		neg, s = true, rest
	} else {
		s = strings.TrimPrefix(s, "+")
	}
	base := 10
	switch {
	case len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X"):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, s = 8, s[1:]
	}
	// An explicit base: strconv then takes no underscores nor other
	// prefixes, as C does not.
	v, err := strconv.ParseInt(s, base, 64)
	if err != nil {
		return 0, fmt.Errorf("not a number")
	}
	if neg {
		v = -v
	}
	return v, nil
}

// parseHex reads a hex number with or without 0x, as scanf's %x does.
func parseHex(s string) (uint64, error) {
	if len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") {
		s = s[2:]
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("not a hex number")
	}
	return v, nil
}

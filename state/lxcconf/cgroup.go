package lxcconf

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pantavisor/pv/spec"
)

// setCgroup handles lxc.cgroup[2][.FILE]; file is "" for the bare key.
func (p *parser) setCgroup(e entry, version int, file string) error {
	if file == "" {
		if e.val != "" {
			return errors.New("only an empty value is valid here (it removes all settings of this cgroup version)")
		}
		p.c.Cgroup = slices.DeleteFunc(p.c.Cgroup, func(s spec.CgroupSetting) bool { return s.Version == version })
		// Device rules are not tracked by version; clearing either version
		// clears them, which only matters for configs mixing both.
		p.c.DevicesAllow, p.c.DevicesDeny = nil, nil
		return nil
	}
	if version == 1 && (file == "dir" || file == "relative" || file == "keep" || strings.HasPrefix(file, "dir.")) {
		// Placement options of LXC's own cgroup tree, not limits.
		p.warn(e.line, e.key, notSupported)
		return nil
	}
	// The runtime writes the value to a file of this name under the
	// container's cgroup, so the name must not be able to leave it.
	if strings.ContainsAny(file, "/ \t") || strings.Contains(file, "..") ||
		strings.HasPrefix(file, ".") || strings.HasSuffix(file, ".") {
		return fmt.Errorf("%q is not a cgroup file name (like memory.limit_in_bytes)", file)
	}
	if !strings.Contains(file, ".") {
		p.warn(e.line, e.key, "unknown key")
		return nil
	}

	switch file {
	case "devices.allow", "devices.deny":
		list := &p.c.DevicesAllow
		if file == "devices.deny" {
			list = &p.c.DevicesDeny
		}
		if e.val == "" {
			*list = nil
			return nil
		}
		rule, err := deviceRule(e.val)
		if err != nil {
			return err
		}
		*list = append(*list, rule)
		return nil
	}

	if e.val == "" {
		p.c.Cgroup = slices.DeleteFunc(p.c.Cgroup, func(s spec.CgroupSetting) bool {
			return s.Version == version && s.Key == file
		})
		return nil
	}
	for i, s := range p.c.Cgroup {
		if s.Version == version && s.Key == file {
			p.c.Cgroup[i].Value = e.val
			return nil
		}
	}
	p.c.Cgroup = append(p.c.Cgroup, spec.CgroupSetting{Version: version, Key: file, Value: e.val})
	return nil
}

// deviceRule validates a devices cgroup rule ("a", or "TYPE MAJOR:MINOR
// ACCESS") and returns it with single spaces. A rule the kernel would reject
// fails the container at start, long after the config was accepted.
func deviceRule(v string) (string, error) {
	f := splitList(v)
	bad := func(why string) error {
		return fmt.Errorf("device rule %q: %s (want \"a\" or \"TYPE MAJOR:MINOR ACCESS\", like \"c 1:3 rwm\")", v, why)
	}
	switch len(f) {
	case 1:
		if f[0] != "a" {
			return "", bad("only \"a\" may stand alone")
		}
		return "a", nil
	case 3:
	default:
		return "", bad("wrong number of fields")
	}
	if f[0] != "a" && f[0] != "b" && f[0] != "c" {
		return "", bad("type must be a, b or c")
	}
	maj, minor, ok := strings.Cut(f[1], ":")
	if !ok || !(maj == "*" || isDigits(maj)) || !(minor == "*" || isDigits(minor)) {
		return "", bad("device number must be MAJOR:MINOR, each a number or *")
	}
	if f[2] == "" || len(f[2]) > 3 {
		return "", bad("access must be a combination of r, w and m")
	}
	for i := 0; i < len(f[2]); i++ {
		c := f[2][i]
		if (c != 'r' && c != 'w' && c != 'm') || strings.IndexByte(f[2][:i], c) >= 0 {
			return "", bad("access must be a combination of r, w and m")
		}
	}
	return strings.Join(f, " "), nil
}

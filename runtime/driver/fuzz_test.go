package driver

import (
	"math"
	"strconv"
	"strings"
	"testing"

	devices "github.com/opencontainers/cgroups/devices/config"
)

// FuzzParseBytes checks a memory size is -1 (no limit) or a non-negative
// count that equals the number times its suffix: never a wrapped value.
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"0", "-1", "max", "512k", "64M", "1g", "9223372036854775807", "9223372036854775807g", "8589934592g", "-5", "k", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseBytes(s)
		if err != nil {
			return
		}
		if n == -1 {
			if s != "-1" && s != "max" {
				t.Fatalf("parseBytes(%q) = -1 (no limit)", s)
			}
			return
		}
		if n < 0 {
			t.Fatalf("parseBytes(%q) = %d, negative", s, n)
		}
		digits, mult := s, int64(1)
		switch strings.ToLower(s[len(s)-1:]) {
		case "k":
			digits, mult = s[:len(s)-1], 1<<10
		case "m":
			digits, mult = s[:len(s)-1], 1<<20
		case "g":
			digits, mult = s[:len(s)-1], 1<<30
		}
		v, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || v > math.MaxInt64/mult || v*mult != n {
			t.Fatalf("parseBytes(%q) = %d, not %s times %d", s, n, digits, mult)
		}
	})
}

// FuzzParseDeviceRule checks a parsed rule is well formed: a known type,
// non-negative numbers or the wildcard, permissions within rwm.
func FuzzParseDeviceRule(f *testing.F) {
	for _, s := range []string{"a", "c 1:3 rwm", "b *:* r", "c 10:200", "c -1:3", "x 1:1", "c 1:3 rwx", "c 1 r", " c  4:5  m ", "c 99999999999999999999:1"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, allow bool) {
		r, err := parseDeviceRule(s, allow)
		if err != nil {
			if r != nil {
				t.Fatalf("parseDeviceRule(%q): a rule with an error", s)
			}
			return
		}
		switch r.Type {
		case devices.WildcardDevice, devices.BlockDevice, devices.CharDevice:
		default:
			t.Fatalf("parseDeviceRule(%q): type %q", s, r.Type)
		}
		for _, n := range []int64{r.Major, r.Minor} {
			if n < 0 && n != devices.Wildcard {
				t.Fatalf("parseDeviceRule(%q): device number %d", s, n)
			}
		}
		if r.Permissions == "" || strings.Trim(string(r.Permissions), "rwm") != "" {
			t.Fatalf("parseDeviceRule(%q): permissions %q", s, r.Permissions)
		}
		if r.Allow != allow {
			t.Fatalf("parseDeviceRule(%q): allow %v, want %v", s, r.Allow, allow)
		}
		if _, err := deviceRules(nil, []string{s}); err != nil {
			t.Fatalf("deviceRules refuses %q that parseDeviceRule takes: %v", s, err)
		}
	})
}

// FuzzParseMountAuto checks every item is either understood or named in
// the error, and the result only ever holds the documented modes.
func FuzzParseMountAuto(f *testing.F) {
	for _, s := range []string{"proc:mixed sys:ro cgroup:mixed", "cgroup:rw:force", "cgroup-full:ro:force", "proc:rw", "sys:rw", "bogus", "proc:force", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		items := strings.Fields(s)
		a, err := parseMountAuto(items)
		for _, m := range []string{a.proc, a.sys, a.cgroup} {
			switch m {
			case "", "ro", "rw", "mixed":
			default:
				t.Fatalf("parseMountAuto(%q): mode %q", items, m)
			}
		}
		if a.proc == "" {
			t.Fatalf("parseMountAuto(%q): proc unset, LXC's default is mixed", items)
		}
		if err == nil {
			return
		}
		// Every refused item is named.
		named := false
		for _, it := range items {
			named = named || strings.Contains(err.Error(), strconv.Quote(it)) ||
				strings.Contains(err.Error(), strconv.Quote(strings.TrimSuffix(it, ":force")))
		}
		if !named {
			t.Fatalf("parseMountAuto(%q): error names no item: %v", items, err)
		}
	})
}

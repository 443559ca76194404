package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// parsed is a validated value: the normalised string every reader sees and,
// for numeric, bool and enum kinds, its number (the enum index for enums,
// the mask for lists) so typed accessors need not parse again.
type parsed struct {
	s string
	n int
}

// normalize checks v against the key's kind and returns its canonical form,
// or a reason for refusing it. Normalising (e.g. "true" → "1", "GRUB" →
// "grub") means GET /config2 shows one spelling whatever a layer wrote.
func (k *KeyInfo) normalize(v string) (parsed, error) {
	if strings.ContainsAny(v, "\x00\r\n") {
		return parsed{}, fmt.Errorf("contains NUL or a line break")
	}
	switch k.Kind {
	case KindString:
		return parsed{s: v}, nil
	case KindInt, KindSize, KindSeconds:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return parsed{}, fmt.Errorf("want a decimal integer (%s)", k.Kind.unit())
		}
		if n < int64(k.Min) || n > int64(k.Max) {
			return parsed{}, fmt.Errorf("want %d..%d (%s)", k.Min, k.Max, k.Kind.unit())
		}
		return parsed{s: strconv.FormatInt(n, 10), n: int(n)}, nil
	case KindBool:
		t := strings.TrimSpace(v)
		switch {
		case strings.EqualFold(t, "true"):
			return parsed{s: "1", n: 1}, nil
		case strings.EqualFold(t, "false"):
			return parsed{s: "0", n: 0}, nil
		}
		// Upstream reads bools with strtol: any integer, non-zero is true.
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			return parsed{}, fmt.Errorf("want 0 or 1")
		}
		if n != 0 {
			return parsed{s: "1", n: 1}, nil
		}
		return parsed{s: "0", n: 0}, nil
	case KindEnum:
		t := strings.TrimSpace(v)
		for i, w := range k.Values {
			if strings.EqualFold(t, w) {
				return parsed{s: w, n: i}, nil
			}
		}
		return parsed{}, fmt.Errorf("want one of %s", strings.Join(k.Values, ", "))
	case KindPath:
		if !filepath.IsAbs(v) {
			return parsed{}, fmt.Errorf("want an absolute path")
		}
		return parsed{s: v}, nil
	case KindName:
		if err := checkName(v); err != nil {
			return parsed{}, err
		}
		return parsed{s: v}, nil
	case KindIPv4:
		a, err := netip.ParseAddr(strings.TrimSpace(v))
		if err != nil || !a.Is4() {
			return parsed{}, fmt.Errorf("want a dotted-quad IPv4 address")
		}
		return parsed{s: a.String()}, nil
	case KindList:
		return k.normalizeList(v)
	}
	return parsed{}, fmt.Errorf("key has unknown kind %d", k.Kind)
}

// normalizeList accepts a comma-separated subset of Values and renders it in
// Values order without duplicates. "update" is added because upstream's log
// server always keeps the update output on; refusing unknown words (upstream
// only warns) keeps a typo from silently dropping an output.
func (k *KeyInfo) normalizeList(v string) (parsed, error) {
	mask := 0
	for w := range strings.SplitSeq(v, ",") {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		i := slices.IndexFunc(k.Values, func(s string) bool { return strings.EqualFold(s, w) })
		if i < 0 {
			return parsed{}, fmt.Errorf("%q is not one of %s", w, strings.Join(k.Values, ", "))
		}
		mask |= 1 << i
	}
	if i := slices.Index(k.Values, "update"); i >= 0 {
		mask |= 1 << i
	}
	var out []string
	for i, w := range k.Values {
		if mask&(1<<i) != 0 {
			out = append(out, w)
		}
	}
	return parsed{s: strings.Join(out, ","), n: mask}, nil
}

func (k Kind) unit() string {
	switch k {
	case KindSize:
		return "bytes"
	case KindSeconds:
		return "seconds"
	}
	return "integer"
}

// checkName enforces the bare-name rule for policy and OEM names: they are
// joined into paths (<etc>/policies/<name>.config,
// trails/<rev>/<oem>/<policy>.config), so anything that could climb out of
// the intended directory is refused. Empty is allowed and means unset.
func checkName(v string) error {
	switch {
	case v == "":
		return nil
	case strings.ContainsAny(v, `/\`):
		return fmt.Errorf("want a bare name, not a path")
	case strings.Contains(v, ".."), v == ".":
		return fmt.Errorf("want a bare name without '..'")
	case strings.TrimSpace(v) != v:
		return fmt.Errorf("want a bare name without surrounding spaces")
	}
	return nil
}

// ValidName reports whether v may be used as a policy or OEM name
// (PV_POLICY, PV_OEM_NAME): a non-empty bare file name with no '/', '\\'
// or "..". The error says why not.
func ValidName(v string) error {
	if v == "" {
		return fmt.Errorf("check name: empty")
	}
	if err := checkName(v); err != nil {
		return fmt.Errorf("check name %q: %w", v, err)
	}
	return nil
}

// legacyValue is the value GET /config serves for a key: upstream
// serialises bools as JSON bools, numbers and enums as numbers (the enum's
// index, the list's mask) and the rest as strings.
func (k *KeyInfo) legacyValue(p parsed) any {
	switch k.Kind {
	case KindBool:
		return p.n != 0
	case KindInt, KindSize, KindSeconds, KindEnum, KindList:
		return p.n
	}
	return p.s
}

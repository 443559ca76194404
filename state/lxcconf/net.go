package lxcconf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// maxNetIndex bounds lxc.net.N so that index arithmetic (the next legacy
// interface) cannot overflow on 32-bit targets.
const maxNetIndex = 1<<16 - 1

var netTypes = []string{"veth", "macvlan", "ipvlan", "vlan", "phys", "empty", "none"}

// netSupported are the lxc.net.N subkeys that are translated.
var netSupported = map[string]bool{
	"type": true, "link": true, "name": true, "hwaddr": true, "flags": true,
	"mtu": true, "ipv4.address": true, "ipv4.gateway": true,
}

// netIgnoredPrefixes are lxc.net.N subkey families LXC knows and we do not
// implement (IPv6, per-type tuning, hook scripts).
var netIgnoredPrefixes = []string{"ipv6.", "veth.", "macvlan.", "ipvlan.", "vlan.", "script."}

func (p *parser) setNet(e entry) error {
	if e.name == "lxc.net" {
		if e.val != "" {
			return errors.New("only an empty value is valid here (it removes all interfaces)")
		}
		clear(p.nets)
		p.legacyNet = -1
		return nil
	}
	idxStr, sub, _ := strings.Cut(strings.TrimPrefix(e.name, "lxc.net."), ".")
	if !isDigits(idxStr) {
		return fmt.Errorf("interface index %q is not a non-negative integer", idxStr)
	}
	idx, err := strconv.Atoi(idxStr)
	if err != nil || idx > maxNetIndex {
		return fmt.Errorf("interface index %s is above %d", idxStr, maxNetIndex)
	}
	if sub == "" {
		if e.val != "" {
			return errors.New("only an empty value is valid here (it removes the interface)")
		}
		delete(p.nets, idx)
		return nil
	}
	if !netSupported[sub] {
		msg := "unknown key"
		if sub == "l2proxy" || slices.ContainsFunc(netIgnoredPrefixes, func(pre string) bool {
			return strings.HasPrefix(sub, pre) && len(sub) > len(pre)
		}) {
			msg = notSupported
		}
		p.warn(e.line, e.key, msg)
		return nil
	}

	ns := p.nets[idx]
	if ns == nil {
		if e.val == "" {
			return nil // resetting a field of an interface that does not exist
		}
		ns = &netState{firstLine: e.line, firstKey: e.key}
		ns.Index = idx
		p.nets[idx] = ns
	}
	v := e.val
	switch sub {
	case "type":
		if v != "" && !slices.Contains(netTypes, v) {
			return fmt.Errorf("unknown interface type %q (want one of %s)", v, strings.Join(netTypes, " "))
		}
		ns.Type = v
	case "link", "name":
		if err := checkIfName(v); err != nil {
			return err
		}
		if sub == "link" {
			ns.Link = v
		} else {
			ns.Name = v
		}
	case "hwaddr":
		mac, err := parseMAC(v)
		if err != nil {
			return err
		}
		ns.HWAddr = mac
	case "flags":
		if v != "" && v != "up" {
			return fmt.Errorf(`want "up", got %q`, v)
		}
		ns.Flags = v
	case "mtu":
		if v == "" {
			ns.MTU = 0
			break
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("want an MTU between 1 and 65535, got %q", v)
		}
		ns.MTU = int(n)
	case "ipv4.address":
		if v == "" {
			ns.IPv4 = nil
			break
		}
		addr, err := p.parseIPv4Address(e, v)
		if err != nil {
			return err
		}
		if !slices.Contains(ns.IPv4, addr) {
			ns.IPv4 = append(ns.IPv4, addr)
		}
	case "ipv4.gateway":
		if v == "auto" || v == "dev" {
			p.warn(e.line, e.key, fmt.Sprintf("gateway %q is %s", v, notSupported))
			ns.Gateway = ""
			break
		}
		if v != "" {
			if _, err := parseIPv4(v); err != nil {
				return err
			}
		}
		ns.Gateway = v
	}
	return nil
}

// checkIfName refuses names the kernel would refuse, so the error points at
// the config instead of at a failing netlink call.
func checkIfName(s string) error {
	switch {
	case s == "":
		return nil
	case len(s) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", s)
	case s == "." || s == "..":
		return fmt.Errorf("interface name %q is not allowed", s)
	case strings.ContainsAny(s, "/: \t"):
		return fmt.Errorf("interface name %q contains '/', ':' or a blank", s)
	}
	return nil
}

// parseMAC accepts six colon-separated octets; LXC lets an octet be "xx",
// to be randomised at start, and so do we (the runtime does the randomising).
func parseMAC(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	bad := fmt.Errorf("want a MAC address like 00:16:3e:xx:xx:xx, got %q", s)
	parts := strings.Split(strings.ToLower(s), ":")
	if len(parts) != 6 {
		return "", bad
	}
	for _, o := range parts {
		if len(o) != 2 || !isHexOrX(o[0]) || !isHexOrX(o[1]) {
			return "", bad
		}
	}
	if first, err := strconv.ParseUint(parts[0], 16, 8); err == nil && first&1 == 1 {
		return "", fmt.Errorf("MAC address %q is a multicast address", s)
	}
	return strings.Join(parts, ":"), nil
}

func isHexOrX(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c == 'x'
}

func parseIPv4(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid IPv4 address: %w", err)
	}
	if !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%q is not an IPv4 address", s)
	}
	return a, nil
}

// parseIPv4Address reads LXC's "ADDR/PREFIX [BROADCAST]" and returns the
// address in CIDR form.
func (p *parser) parseIPv4Address(e entry, v string) (string, error) {
	f := splitList(v)
	if len(f) > 2 {
		return "", fmt.Errorf("want ADDRESS/PREFIX [BROADCAST], got %q", v)
	}
	if len(f) == 2 {
		if _, err := parseIPv4(f[1]); err != nil {
			return "", fmt.Errorf("broadcast: %w", err)
		}
		p.warn(e.line, e.key, "broadcast address "+notSupported)
	}
	if strings.Contains(f[0], "/") {
		pfx, err := netip.ParsePrefix(f[0])
		if err != nil {
			return "", fmt.Errorf("invalid IPv4 address: %w", err)
		}
		if !pfx.Addr().Is4() {
			return "", fmt.Errorf("%q is not an IPv4 address", f[0])
		}
		return pfx.String(), nil
	}
	a, err := parseIPv4(f[0])
	if err != nil {
		return "", err
	}
	// Without a prefix LXC falls back to the pre-CIDR class of the address.
	var bits int
	switch b := a.As4()[0]; {
	case b < 128:
		bits = 8
	case b < 192:
		bits = 16
	case b < 224:
		bits = 24
	default:
		return "", fmt.Errorf("%q needs a prefix length (ADDRESS/PREFIX)", f[0])
	}
	p.warn(e.line, e.key, fmt.Sprintf("no prefix length, using /%d as LXC does", bits))
	return netip.PrefixFrom(a, bits).String(), nil
}

package lxcconf

import (
	"errors"
	"strconv"
	"strings"
)

// legacyKeys maps key names LXC renamed in 2.1 to their current names. Users
// still copy the old names from older documentation, and LXC accepted them
// for years, so they are translated with a warning instead of rejected.
var legacyKeys = map[string]string{
	"lxc.utsname":             "lxc.uts.name",
	"lxc.init_cmd":            "lxc.init.cmd",
	"lxc.init_uid":            "lxc.init.uid",
	"lxc.init_gid":            "lxc.init.gid",
	"lxc.rootfs":              "lxc.rootfs.path",
	"lxc.tty":                 "lxc.tty.max",
	"lxc.pts":                 "lxc.pty.max",
	"lxc.mount":               "lxc.mount.fstab",
	"lxc.aa_profile":          "lxc.apparmor.profile",
	"lxc.aa_allow_incomplete": "lxc.apparmor.allow_incomplete",
	"lxc.se_context":          "lxc.selinux.context",
	"lxc.seccomp":             "lxc.seccomp.profile",
	"lxc.console":             "lxc.console.path",
	"lxc.logfile":             "lxc.log.file",
	"lxc.loglevel":            "lxc.log.level",
	"lxc.syslog":              "lxc.log.syslog",
	"lxc.haltsignal":          "lxc.signal.halt",
	"lxc.rebootsignal":        "lxc.signal.reboot",
	"lxc.stopsignal":          "lxc.signal.stop",
	"lxc.id_map":              "lxc.idmap",
	"lxc.devttydir":           "lxc.tty.dir",
}

// legacyNetSubkeys renames lxc.network.* subkeys whose name changed on the
// way to lxc.net.N.*.
var legacyNetSubkeys = map[string]string{
	"ipv4":       "ipv4.address",
	"ipv6":       "ipv6.address",
	"pair":       "veth.pair",
	"upscript":   "script.up",
	"downscript": "script.down",
}

// ignoredKeys are LXC keys with no counterpart in our runtime. They are
// accepted so upstream configs load, but each is reported because the
// behaviour it asks for will not happen.
var ignoredKeys = map[string]string{
	"lxc.autodev":             "",
	"lxc.autodev.tmpfs.size":  "",
	"lxc.arch":                "",
	"lxc.personality":         "",
	"lxc.mount.fstab":         "",
	"lxc.rootfs.options":      "",
	"lxc.rootfs.mount":        "",
	"lxc.rootfs.managed":      "",
	"lxc.ephemeral":           "",
	"lxc.tty.dir":             "",
	"lxc.group":               "",
	"lxc.init.groups":         "",
	"lxc.execute.cmd":         "",
	"lxc.keyring.session":     "",
	"lxc.environment.runtime": "",
	"lxc.environment.hook":    "",
	"lxc.namespace.clone":     "",
	"lxc.sched.core":          "",
	"lxc.pivotdir":            "obsolete, ignored",
	"lxc.kmsg":                "obsolete, ignored",
	"lxc.rootfs.backend":      "obsolete, ignored",
}

// ignoredPrefixes are families of ignored keys.
var ignoredPrefixes = []string{
	"lxc.console.",
	"lxc.log.",
	"lxc.hook.",
	"lxc.selinux.",
	"lxc.signal.",
	"lxc.start.",
	"lxc.prlimit.",
	"lxc.limit.",
	"lxc.sysctl.",
	"lxc.proc.",
	"lxc.namespace.share.",
	"lxc.time.",
	"lxc.monitor.",
}

const notSupported = "not supported, ignored"

// ignoredMsg says whether a (canonical) key is known but ignored, and the
// warning to give for it.
func ignoredMsg(key string) (string, bool) {
	if msg, ok := ignoredKeys[key]; ok {
		if msg == "" {
			msg = notSupported
		}
		return msg, true
	}
	for _, pre := range ignoredPrefixes {
		if strings.HasPrefix(key, pre) && len(key) > len(pre) {
			return notSupported, true
		}
	}
	return "", false
}

// legacyNetKey maps an lxc.network[.N].* key to its lxc.net.N.* name and
// the deprecation warning to give. Unindexed keys follow LXC 2.0: each
// lxc.network.type starts a new interface and the keys after it configure
// that interface, so the index depends on what came before.
func (p *parser) legacyNetKey(key, val string) (name, msg string, err error) {
	if key == "lxc.network" {
		return "lxc.net", "deprecated name of lxc.net", nil
	}
	rest := strings.TrimPrefix(key, "lxc.network.")
	first, sub, _ := strings.Cut(rest, ".")
	if isDigits(first) {
		if s, ok := legacyNetSubkeys[sub]; ok {
			sub = s
		}
		name = "lxc.net." + first
		if sub != "" {
			name += "." + sub
		}
		return name, "deprecated name of " + name, nil
	}

	sub = rest
	if s, ok := legacyNetSubkeys[sub]; ok {
		sub = s
	}
	msg = "deprecated, use lxc.net.<index>." + sub
	if sub == "type" {
		if val == "" {
			// An empty unindexed type cleared all interfaces in LXC 2.0.
			p.legacyNet = -1
			return "lxc.net", msg, nil
		}
		next := 0
		for i := range p.nets {
			if i >= next {
				next = i + 1
			}
		}
		p.legacyNet = next
	}
	if p.legacyNet < 0 {
		return "", "", errors.New("comes before any lxc.network.type, so it belongs to no interface")
	}
	return "lxc.net." + strconv.Itoa(p.legacyNet) + "." + sub, msg, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// splitList splits a space-separated LXC list value the way LXC does (on
// blanks, never producing empty items).
func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '\t' })
}

// unenforceable says whether a key asks for confinement this runtime does
// not enforce yet, and why.
func (p *parser) unenforceable(key string) (string, bool) {
	switch {
	case key == "lxc.seccomp.notify.proxy" || key == "lxc.seccomp.notify.cookie":
		return "seccomp notifications need a notification proxy, which this runtime does not run", true
	case key == "lxc.seccomp.profile" && p.open == nil:
		return "the profile file is not read without the revision", true
	case key == "lxc.include" && p.open == nil:
		return "included files are not read yet", true
	}
	return "", false
}

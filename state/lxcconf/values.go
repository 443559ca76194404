package lxcconf

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/pantavisor/pv/spec"
)

func (p *parser) setInitCmd(e entry) error {
	if strings.Trim(dequote(e.val), blanks) == "" {
		p.c.Args = nil // the runtime default, /sbin/init
		return nil
	}
	args, err := splitCommand(e.val)
	if err != nil {
		return err
	}
	if len(args) == 1 && dequote(e.val) != e.val {
		// LXC strips quotes around the whole value before splitting it,
		// so `"/bin/sh -c x"` runs /bin/sh, not a program named "/bin/sh -c x".
		if inner, err := splitCommand(dequote(e.val)); err == nil && len(inner) > 1 {
			p.warn(e.line, e.key, "whole command is quoted; split inside the quotes as LXC does")
			args = inner
		}
	}
	if args[0] == "" {
		return errors.New("empty program name")
	}
	p.c.Args = args
	return nil
}

// splitCommand splits a command line as a POSIX shell would, without any
// expansion: blanks separate words, single quotes are literal, double quotes
// honour \" \\ \$ and \`, and a backslash outside quotes escapes any byte.
func splitCommand(s string) ([]string, error) {
	var (
		args   []string
		cur    strings.Builder
		inWord bool
	)
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; ch {
		case ' ', '\t':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		case '\\':
			if i+1 == len(s) {
				return nil, errors.New("command ends with a lone backslash")
			}
			i++
			cur.WriteByte(s[i])
			inWord = true
		case '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated single quote at byte %d of the command", i+1)
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case '"':
			open := i
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, fmt.Errorf("unterminated double quote at byte %d of the command", open+1)
			}
			inWord = true
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}

func (p *parser) setInitCwd(e entry) error {
	if e.val != "" && !strings.HasPrefix(e.val, "/") {
		return fmt.Errorf("want an absolute path, got %q", e.val)
	}
	p.c.Cwd = e.val
	return nil
}

// setID parses lxc.init.uid/gid; empty resets to the default (root).
func setID(dst **uint32, v string) error {
	if v == "" {
		*dst = nil
		return nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return fmt.Errorf("want a non-negative integer below 2^32, got %q", v)
	}
	id := uint32(n)
	*dst = &id
	return nil
}

// setCount parses lxc.tty.max/lxc.pty.max; empty resets to 0.
func setCount(dst *int, v string) error {
	if v == "" {
		*dst = 0
		return nil
	}
	n, err := strconv.ParseUint(v, 10, 31)
	if err != nil {
		return fmt.Errorf("want a non-negative integer below 2^31, got %q", v)
	}
	*dst = int(n)
	return nil
}

func (p *parser) setEnv(e entry) error {
	if e.val == "" {
		p.c.Env = nil
		clear(p.envIndex)
		return nil
	}
	name, _, ok := strings.Cut(e.val, "=")
	if !ok {
		// A bare name asks LXC to copy the host's value; the host
		// environment of PID 1 is no business of a container.
		p.warn(e.line, e.key, fmt.Sprintf("%q has no value (LXC would copy it from the host); skipped", e.val))
		return nil
	}
	if name == "" {
		return fmt.Errorf(`missing variable name before "=" in %q`, e.val)
	}
	if strings.ContainsAny(name, blanks) {
		return fmt.Errorf("variable name %q contains a blank", name)
	}
	if i, ok := p.envIndex[name]; ok {
		p.c.Env[i] = e.val
		return nil
	}
	p.envIndex[name] = len(p.c.Env)
	p.c.Env = append(p.c.Env, e.val)
	return nil
}

func (p *parser) setMountEntry(e entry) error {
	if e.val == "" {
		p.c.Mounts = nil
		return nil
	}
	f := splitList(e.val)
	if len(f) < 4 || len(f) > 6 {
		return fmt.Errorf("want fstab fields \"source target fstype options [dump [pass]]\", got %d field(s)", len(f))
	}
	for _, n := range f[4:] {
		if !isDigits(n) {
			return fmt.Errorf("dump and pass fields must be non-negative integers, got %q", n)
		}
	}
	var dec [4]string
	for i, name := range []string{"source", "target", "fstype", "options"} {
		s, err := unescapeFstab(f[i])
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		dec[i] = s
	}
	target, err := mountTarget(dec[1])
	if err != nil {
		return err
	}
	m := spec.Mount{Source: dec[0], Target: target, FSType: dec[2]}
	for _, o := range strings.Split(dec[3], ",") {
		if o != "" {
			m.Options = append(m.Options, o)
		}
	}
	p.c.Mounts = append(p.c.Mounts, m)
	return nil
}

// mountTarget makes a mount target relative to the container root. LXC
// reads absolute targets inside the rootfs too; ".." is refused because
// the runtime must never be asked to mount outside the container.
func mountTarget(t string) (string, error) {
	t = strings.TrimLeft(t, "/")
	for _, c := range strings.Split(t, "/") {
		if c == ".." {
			return "", fmt.Errorf("target %q leaves the container root", t)
		}
	}
	return path.Clean(t), nil
}

// unescapeFstab decodes fstab's octal escapes (\040 for a space, \011 tab,
// \012 newline, \134 backslash, or any other \ooo); other backslashes stay.
func unescapeFstab(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) && s[i+1] <= '3' {
			c := (s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0')
			if c == 0 {
				return "", fmt.Errorf(`%q decodes to a NUL byte`, s)
			}
			b.WriteByte(c)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// mountAutoOptions lists the suffixes LXC accepts after each lxc.mount.auto
// base name.
var mountAutoOptions = map[string][]string{
	"proc":        {"", "mixed", "rw"},
	"sys":         {"", "ro", "mixed", "rw"},
	"cgroup":      {"", "mixed", "ro", "rw", "force", "mixed:force", "ro:force", "rw:force"},
	"cgroup-full": {"", "mixed", "ro", "rw", "force", "mixed:force", "ro:force", "rw:force"},
}

func checkMountAuto(item string) error {
	base, opt, hasOpt := strings.Cut(item, ":")
	if base == "shmounts" {
		if opt == "" {
			return errors.New(`"shmounts" needs a host path: shmounts:HOST[:CONTAINER]`)
		}
		return nil
	}
	opts, ok := mountAutoOptions[base]
	if !ok {
		return fmt.Errorf("unknown automatic mount %q (want proc, sys, cgroup, cgroup-full or shmounts)", item)
	}
	if hasOpt && opt == "" {
		return fmt.Errorf("automatic mount %q has an empty option", item)
	}
	for _, o := range opts {
		if o == opt {
			return nil
		}
	}
	return fmt.Errorf("unknown option %q for automatic mount %q", opt, base)
}

func (p *parser) setMountAuto(e entry) error {
	if e.val == "" {
		p.c.MountAuto = nil
		return nil
	}
	for _, item := range splitList(e.val) {
		if err := checkMountAuto(item); err != nil {
			return err
		}
		p.c.MountAuto = appendUnique(p.c.MountAuto, item)
	}
	return nil
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// capNames are the Linux capabilities by number, as LXC spells them.
var capNames = []string{
	"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill",
	"setgid", "setuid", "setpcap", "linux_immutable", "net_bind_service",
	"net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
	"sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
	"sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time",
	"sys_tty_config", "mknod", "lease", "audit_write", "audit_control",
	"setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
	"block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
}

func knownCap(s string) bool {
	for _, c := range capNames {
		if c == s {
			return true
		}
	}
	return false
}

// capName validates one capability and returns its canonical name. Numbers
// are accepted because LXC accepts them.
func capName(s string) (string, error) {
	if knownCap(s) {
		return s, nil
	}
	if isDigits(s) {
		if n, err := strconv.Atoi(s); err == nil && n < len(capNames) {
			return capNames[n], nil
		}
	}
	if alt := strings.TrimPrefix(strings.ToLower(s), "cap_"); knownCap(alt) {
		return "", fmt.Errorf("unknown capability %q (LXC spells it %q)", s, alt)
	}
	return "", fmt.Errorf("unknown capability %q", s)
}

func (p *parser) setCapDrop(e entry) error {
	if e.val == "" {
		p.c.CapDrop = nil
		return nil
	}
	for _, item := range splitList(e.val) {
		if item == "none" {
			return errors.New(`"none" is only meaningful in lxc.cap.keep`)
		}
		c, err := capName(item)
		if err != nil {
			return err
		}
		if len(p.c.CapDrop) == 0 {
			p.capDropLine, p.capDropKey = e.line, e.key
		}
		p.c.CapDrop = appendUnique(p.c.CapDrop, c)
	}
	return nil
}

func (p *parser) setCapKeep(e entry) error {
	if e.val == "" {
		p.c.CapKeep = nil
		p.keepNone = false
		return nil
	}
	for _, item := range splitList(e.val) {
		if item == "none" {
			// As in LXC, "none" forgets what was kept so far; only
			// capabilities named after it survive.
			p.c.CapKeep = nil
			p.keepNone = true
			continue
		}
		c, err := capName(item)
		if err != nil {
			return err
		}
		p.c.CapKeep = appendUnique(p.c.CapKeep, c)
	}
	return nil
}

// maxHostname is the kernel's limit on a UTS name (__NEW_UTS_LEN).
const maxHostname = 64

func (p *parser) setUTSName(e entry) error {
	if len(e.val) > maxHostname {
		return fmt.Errorf("host name is %d bytes long, the kernel allows %d", len(e.val), maxHostname)
	}
	p.c.Hostname = e.val
	return nil
}

var namespaceNames = []string{"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"}

func (p *parser) setNamespaceKeep(e entry) error {
	if e.val == "" {
		p.c.NamespaceKeep = nil
		return nil
	}
	for _, item := range splitList(e.val) {
		known := false
		for _, n := range namespaceNames {
			known = known || n == item
		}
		if !known {
			return fmt.Errorf("unknown namespace %q (want one of %s)", item, strings.Join(namespaceNames, " "))
		}
		p.c.NamespaceKeep = appendUnique(p.c.NamespaceKeep, item)
	}
	return nil
}

// unsupportedBackends are LXC storage backends we cannot mount a rootfs
// from; anything else before a colon is taken as part of a plain path.
var unsupportedBackends = map[string]bool{
	"aufs": true, "btrfs": true, "loop": true, "lvm": true,
	"nbd": true, "rbd": true, "zfs": true,
}

func (p *parser) setRootfs(e entry) error {
	v := e.val
	if v == "" {
		p.c.Rootfs = spec.Rootfs{}
		return nil
	}
	backend, rest, hasColon := strings.Cut(v, ":")
	switch {
	case hasColon && (backend == "overlayfs" || backend == "overlay"):
		i := strings.LastIndexByte(rest, ':')
		if i <= 0 || i == len(rest)-1 {
			return fmt.Errorf("want %s:LOWER:UPPER with both paths, got %q", backend, v)
		}
		p.c.Rootfs = spec.Rootfs{Type: "overlayfs", Lower: rest[:i], Upper: rest[i+1:]}
	case hasColon && backend == "dir":
		if rest == "" {
			return errors.New(`want dir:PATH, the path is empty`)
		}
		p.c.Rootfs = spec.Rootfs{Type: "dir", Lower: rest}
	case hasColon && unsupportedBackends[backend]:
		return fmt.Errorf("storage backend %q is not supported (want overlayfs:LOWER:UPPER, dir:PATH or a path)", backend)
	default:
		p.c.Rootfs = spec.Rootfs{Type: "dir", Lower: v}
	}
	return nil
}

// setNoNewPrivs is lxc.no_new_privs: 0 or 1, as LXC reads it.
func (p *parser) setNoNewPrivs(e entry) error {
	return setFlag(&p.c.NoNewPrivileges, e.val)
}

// setFlag reads LXC's 0 or 1.
func setFlag(dst *bool, v string) error {
	switch strings.TrimSpace(v) {
	case "0":
		*dst = false
	case "1":
		*dst = true
	default:
		return fmt.Errorf("must be 0 or 1, got %q", v)
	}
	return nil
}

// setIDMap reads "lxc.idmap = u|g|b CONTAINERID HOSTID COUNT" as LXC does;
// "b" maps both uids and gids, and an empty value clears every mapping.
// Ranges are checked here so a bad line names its key instead of failing
// when the kernel refuses the map at start.
func (p *parser) setIDMap(e entry) error {
	if e.val == "" {
		p.c.UIDMap, p.c.GIDMap = nil, nil
		return nil
	}
	f := splitList(e.val)
	if len(f) != 4 {
		return fmt.Errorf(`want "u|g|b container-id host-id count", got %q`, e.val)
	}
	var n [3]uint32
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return fmt.Errorf("want a non-negative integer below 2^32, got %q", s)
		}
		n[i] = uint32(v)
	}
	m := spec.IDMap{ContainerID: n[0], HostID: n[1], Count: n[2]}
	if m.Count == 0 {
		return errors.New("count is 0")
	}
	if uint64(m.ContainerID)+uint64(m.Count) > 1<<32 || uint64(m.HostID)+uint64(m.Count) > 1<<32 {
		return fmt.Errorf("range %q goes past 2^32", e.val)
	}
	switch f[0] {
	case "u":
		p.c.UIDMap = append(p.c.UIDMap, m)
	case "g":
		p.c.GIDMap = append(p.c.GIDMap, m)
	case "b":
		p.c.UIDMap = append(p.c.UIDMap, m)
		p.c.GIDMap = append(p.c.GIDMap, m)
	default:
		return fmt.Errorf("type %q is not u, g or b", f[0])
	}
	return nil
}

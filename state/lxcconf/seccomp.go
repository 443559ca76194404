package lxcconf

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pantavisor/pv/spec"
)

// setSeccompProfile reads the file lxc.seccomp.profile names from the
// revision (as lxc.include does) and parses it as LXC reads profiles.
func (p *parser) setSeccompProfile(e entry) error {
	if strings.TrimSpace(e.val) == "" {
		p.c.Seccomp = nil
		return nil
	}
	name, data, err := p.readRevisionFile(e.val)
	if err != nil {
		return err
	}
	prof, err := ParseSeccompProfile(string(data))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	p.c.Seccomp = prof
	return nil
}

// mntForce is MNT_FORCE, the umount2 flag LXC's reject_force_umount rule
// matches.
const mntForce = 1

// seccompSections are the architecture sections of LXC's format 2, by
// their lower-case names (LXC also accepts them in upper case).
var seccompSections = map[string]bool{
	"all": true, "x86": true, "x32": true, "x86_64": true, "arm": true, "arm64": true,
	"ppc": true, "ppc64": true, "ppc64le": true, "mips": true, "mips64": true, "mips64n32": true,
	"mipsel": true, "mipsel64": true, "mipsel64n32": true, "s390": true, "s390x": true,
}

// ParseSeccompProfile parses a seccomp profile in LXC's format 1 or 2:
//
//	1
//	allowlist
//	<syscall number>...
//
//	2
//	denylist|allowlist [default action]
//	[arch]
//	<syscall name> [action [[index,value,op(,mask)]...]]
//
// In format 2 a denylist allows what no rule matches and its rules kill by
// default; an allowlist is the other way round. Actions are kill, errno N,
// allow, trap and notify; "blacklist" and "whitelist" are LXC's old names
// of the two lists, and reject_force_umount is LXC's shorthand for
// "umount2 errno EACCES [1,MNT_FORCE,&=,MNT_FORCE]". Errors name the
// line. Where LXC is lenient with what a line says after what it needs
// (sscanf), this parser refuses the line instead: a profile is confinement
// and what it was meant to say must not be guessed.
func ParseSeccompProfile(text string) (*spec.Seccomp, error) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 4096), maxIncludeSize)
	n := 0
	next := func() (string, bool) {
		for sc.Scan() {
			n++
			return strings.TrimRight(sc.Text(), " \t\r"), true
		}
		return "", false
	}
	first, ok := next()
	if !ok {
		return nil, errors.New("empty profile: want its format version (1 or 2) on line 1")
	}
	version := strings.TrimSpace(first)
	if version != "1" && version != "2" {
		return nil, fmt.Errorf("line 1: format version %q: want 1 or 2", version)
	}
	header, ok := next()
	if !ok {
		return nil, errors.New("line 2: missing: want the policy type (allowlist or denylist)")
	}
	if strings.Contains(header, "debug") {
		return nil, errors.New(`line 2: "debug" is not supported (nor by LXC)`)
	}
	if version == "1" {
		return parseSeccompV1(header, next, func() int { return n })
	}
	return parseSeccompV2(header, next, func() int { return n })
}

func parseSeccompV1(header string, next func() (string, bool), line func() int) (*spec.Seccomp, error) {
	if !strings.Contains(header, "allowlist") && !strings.Contains(header, "whitelist") {
		return nil, fmt.Errorf("line 2: %q: format 1 only has allowlists", header)
	}
	prof := &spec.Seccomp{Default: spec.SeccompAction{Kind: spec.SeccompKill}, NativeOnly: true}
	for {
		l, ok := next()
		if !ok {
			return prof, nil
		}
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if _, err := strconv.ParseUint(f[0], 10, 31); err != nil {
			return nil, fmt.Errorf("line %d: %q: want a system call number", line(), f[0])
		}
		prof.Rules = append(prof.Rules, spec.SeccompRule{Line: line(), Syscall: f[0],
			Action: spec.SeccompAction{Kind: spec.SeccompAllow}})
	}
}

func parseSeccompV2(header string, next func() (string, bool), line func() int) (*spec.Seccomp, error) {
	kind, rest, _ := strings.Cut(strings.TrimSpace(header), " ")
	var deny bool
	switch {
	case strings.HasPrefix(kind, "denylist"), strings.HasPrefix(kind, "blacklist"):
		deny = true
	case strings.HasPrefix(kind, "allowlist"), strings.HasPrefix(kind, "whitelist"):
	default:
		return nil, fmt.Errorf("line 2: policy type %q: want allowlist or denylist", kind)
	}
	prof := &spec.Seccomp{Default: spec.SeccompAction{Kind: spec.SeccompKill}}
	ruleAction := spec.SeccompAction{Kind: spec.SeccompAllow}
	if deny {
		prof.Default, ruleAction = ruleAction, prof.Default
	}
	if f := strings.Fields(rest); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
		a, used, err := parseSeccompAction(f)
		if err != nil {
			return nil, fmt.Errorf("line 2: default action: %w", err)
		}
		if used < len(f) && !strings.HasPrefix(f[used], "#") {
			return nil, fmt.Errorf("line 2: %q after the default action", strings.Join(f[used:], " "))
		}
		prof.Default = a
	}
	arch := ""
	for {
		l, ok := next()
		if !ok {
			return prof, nil
		}
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if strings.HasPrefix(t, "[") {
			name := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(t, "["), "]"))
			if !strings.HasSuffix(t, "]") || !seccompSections[name] {
				return nil, fmt.Errorf("line %d: unsupported architecture section %q", line(), t)
			}
			arch = name
			continue
		}
		r, err := parseSeccompRule(t, ruleAction)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line(), err)
		}
		r.Line, r.Arch = line(), arch
		prof.Rules = append(prof.Rules, r)
	}
}

// parseSeccompRule reads "name [action [args...]] [# comment]".
func parseSeccompRule(t string, def spec.SeccompAction) (spec.SeccompRule, error) {
	if i := strings.Index(t, "#"); i >= 0 {
		t = t[:i]
	}
	name, rest, _ := strings.Cut(strings.TrimSpace(t), " ")
	rest = strings.TrimSpace(rest)
	if name == "reject_force_umount" {
		if rest != "" {
			return spec.SeccompRule{}, fmt.Errorf("reject_force_umount takes nothing after it, got %q", rest)
		}
		return spec.SeccompRule{Syscall: "umount2", Action: spec.SeccompAction{Kind: spec.SeccompErrno, Errno: 13},
			Args: []spec.SeccompArg{{Index: 1, Op: "&=", Value: mntForce, Mask: mntForce}}}, nil
	}
	if !validSyscallName(name) {
		return spec.SeccompRule{}, fmt.Errorf("%q is not a system call name", name)
	}
	r := spec.SeccompRule{Syscall: name, Action: def}
	argText := rest
	if rest != "" && !strings.HasPrefix(rest, "[") {
		words, tail, _ := strings.Cut(rest, "[")
		f := strings.Fields(words)
		a, used, err := parseSeccompAction(f)
		if err != nil {
			return r, fmt.Errorf("%s: %w", name, err)
		}
		if used < len(f) {
			return r, fmt.Errorf("%s: %q after the action", name, strings.Join(f[used:], " "))
		}
		r.Action = a
		argText = ""
		if strings.Contains(rest, "[") {
			argText = "[" + tail
		}
	}
	for argText != "" {
		if !strings.HasPrefix(argText, "[") {
			return r, fmt.Errorf("%s: %q: want an argument rule [index,value,op] or [index,value,op,mask]", name, argText)
		}
		end := strings.Index(argText, "]")
		if end < 0 {
			return r, fmt.Errorf("%s: %q has no closing ]", name, argText)
		}
		a, err := parseSeccompArg(argText[1:end])
		if err != nil {
			return r, fmt.Errorf("%s: %s: %w", name, argText[:end+1], err)
		}
		for _, o := range r.Args {
			if o.Index == a.Index {
				return r, fmt.Errorf("%s: argument %d is compared twice", name, a.Index)
			}
		}
		r.Args = append(r.Args, a)
		argText = strings.TrimSpace(argText[end+1:])
	}
	return r, nil
}

// validSyscallName accepts what a system call table has: lower-case
// letters, digits and underscores.
func validSyscallName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// parseSeccompAction reads an action from the start of f and says how many
// words it used.
func parseSeccompAction(f []string) (spec.SeccompAction, int, error) {
	if len(f) == 0 {
		return spec.SeccompAction{}, 0, errors.New("no action")
	}
	switch f[0] {
	case "kill":
		return spec.SeccompAction{Kind: spec.SeccompKill}, 1, nil
	case "allow":
		return spec.SeccompAction{Kind: spec.SeccompAllow}, 1, nil
	case "trap":
		return spec.SeccompAction{Kind: spec.SeccompTrap}, 1, nil
	case "notify":
		return spec.SeccompAction{Kind: spec.SeccompNotify}, 1, nil
	case "errno":
		if len(f) < 2 {
			return spec.SeccompAction{}, 0, errors.New("errno needs a number")
		}
		// The kernel returns at most MAX_ERRNO (4095) as an error.
		v, err := strconv.ParseUint(f[1], 10, 16)
		if err != nil || v > 4095 {
			return spec.SeccompAction{}, 0, fmt.Errorf("errno %q: want a number from 0 to 4095", f[1])
		}
		return spec.SeccompAction{Kind: spec.SeccompErrno, Errno: uint16(v)}, 2, nil
	}
	return spec.SeccompAction{}, 0, fmt.Errorf("action %q: want kill, errno N, allow, trap or notify", f[0])
}

// seccompOps are LXC's comparison operators, by both of their names.
var seccompOps = map[string]string{
	"SCMP_CMP_EQ": "==", "SCMP_CMP_NE": "!=", "SCMP_CMP_LT": "<", "SCMP_CMP_LE": "<=",
	"SCMP_CMP_GT": ">", "SCMP_CMP_GE": ">=", "SCMP_CMP_MASKED_EQ": "&=",
	"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "&=": "&=",
}

// parseSeccompArg reads "index,value,op" or "index,value,op,mask" (the text
// between the brackets). Numbers are decimal, 0x hexadecimal or 0 octal, as
// LXC reads them.
func parseSeccompArg(s string) (spec.SeccompArg, error) {
	f := strings.Split(s, ",")
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	if len(f) != 3 && len(f) != 4 {
		return spec.SeccompArg{}, errors.New("want index,value,op or index,value,op,mask")
	}
	idx, err := strconv.ParseUint(f[0], 0, 8)
	if err != nil || idx > 5 {
		return spec.SeccompArg{}, fmt.Errorf("index %q: want 0 to 5", f[0])
	}
	a := spec.SeccompArg{Index: uint8(idx)}
	if a.Value, err = strconv.ParseUint(f[1], 0, 64); err != nil {
		return a, fmt.Errorf("value %q: want an unsigned 64-bit number", f[1])
	}
	op, ok := seccompOps[f[2]]
	if !ok {
		return a, fmt.Errorf("operator %q: want one of ==, !=, <, <=, >, >=, &= or their SCMP_CMP_ names", f[2])
	}
	a.Op = op
	if len(f) == 4 {
		if a.Mask, err = strconv.ParseUint(f[3], 0, 64); err != nil {
			return a, fmt.Errorf("mask %q: want an unsigned 64-bit number", f[3])
		}
	}
	if op == "&=" && len(f) != 4 {
		return a, errors.New("&= needs a mask")
	}
	return a, nil
}

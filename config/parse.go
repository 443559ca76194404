package config

import (
	"errors"
	"fmt"
	"strings"
)

// Pair is one KEY=VALUE item of a source, as written: the key is not yet
// resolved, so it may be a legacy alias or unknown.
type Pair struct {
	Key   string
	Value string
	// Line is the 1-based line of a config file; 0 for sources without
	// lines (cmdline, environment, maps).
	Line int
}

// ErrSyntax is wrapped by every error of ParseConfigFile.
var ErrSyntax = errors.New("syntax error")

// SyntaxError locates a malformed line of a config file.
type SyntaxError struct {
	Line int
	Msg  string
}

// Error renders the error as "line N: syntax error: MSG".
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d: %s: %s", e.Line, ErrSyntax, e.Msg)
}

// Unwrap returns ErrSyntax.
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

// ParseConfigFile parses pantavisor.config-style content: one KEY=VALUE per
// line, blank lines and lines starting with '#' ignored, spaces around key
// and value trimmed, and one pair of matching quotes ('…' or "…") around
// the value removed. Only whole lines are comments: a '#' inside a value is
// data (URLs contain it). The first malformed line ends parsing with a
// *SyntaxError carrying its line number and no pairs, so that a caller
// applies a file entirely or not at all.
func ParseConfigFile(data []byte) ([]Pair, error) {
	var pairs []Pair
	for n, line := range strings.Split(string(data), "\n") {
		p, ok, err := parseLine(line, n+1)
		if err != nil {
			return nil, err
		}
		if ok {
			pairs = append(pairs, p)
		}
	}
	return pairs, nil
}

// ParseConfigLines is ParseConfigFile going on past malformed lines, as
// upstream's loader does: it returns the pairs of the good lines and one
// *SyntaxError per malformed line, joined. It is for the device's own
// boot files, where one stray line must not cost the device every other
// setting (its storage device, its bootloader type).
func ParseConfigLines(data []byte) ([]Pair, error) {
	var pairs []Pair
	var errs []error
	for n, line := range strings.Split(string(data), "\n") {
		p, ok, err := parseLine(line, n+1)
		switch {
		case err != nil:
			errs = append(errs, err)
		case ok:
			pairs = append(pairs, p)
		}
	}
	return pairs, errors.Join(errs...)
}

// parseLine parses line lineNo of a config file; ok is false for a blank
// or comment line.
func parseLine(line string, lineNo int) (p Pair, ok bool, err error) {
	t := strings.TrimSpace(line)
	if t == "" || t[0] == '#' {
		return Pair{}, false, nil
	}
	k, v, found := strings.Cut(t, "=")
	if !found {
		return Pair{}, false, &SyntaxError{Line: lineNo, Msg: "missing '='"}
	}
	k = strings.TrimSpace(k)
	if k == "" {
		return Pair{}, false, &SyntaxError{Line: lineNo, Msg: "empty key"}
	}
	if !validKeySyntax(k) {
		return Pair{}, false, &SyntaxError{Line: lineNo, Msg: fmt.Sprintf("bad key %q: want letters, digits, '_', '.', '-'", k)}
	}
	v = strings.TrimSpace(v)
	if v != "" && (v[0] == '"' || v[0] == '\'') {
		if len(v) < 2 || v[len(v)-1] != v[0] {
			return Pair{}, false, &SyntaxError{Line: lineNo, Msg: fmt.Sprintf("unterminated %c quote", v[0])}
		}
		v = v[1 : len(v)-1]
	}
	if strings.ContainsRune(v, 0) {
		return Pair{}, false, &SyntaxError{Line: lineNo, Msg: "NUL byte in value"}
	}
	return Pair{Key: k, Value: v, Line: lineNo}, true, nil
}

func validKeySyntax(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// Cmdline prefixes: pv_ tokens are PV keys at LevelPVCmdline, ph_ tokens PH
// keys at LevelPHCmdline.
const (
	pvPrefix = "pv_"
	phPrefix = "ph_"
)

// CmdlineRev is the parameter by which a Pantavisor boot script tells the
// system the revision it booted (upstream's runtime pv_rev). It is the
// bootloader's word, not a setting: ParseCmdline and ParseEnviron leave it
// to the boot decision (CmdlineValue).
const CmdlineRev = "pv_rev"

// CmdlineValue returns the value of the last parameter named key on a
// kernel command line, split as ParseCmdline splits it; ok is false when
// there is none. The last one counts, as for the kernel's own parameters:
// a boot script appends to the board's built-in arguments.
func CmdlineValue(cmdline, key string) (value string, ok bool) {
	for _, tok := range splitCmdline(cmdline) {
		if k, v, _ := strings.Cut(tok, "="); k == key {
			value, ok = v, true
		}
	}
	return value, ok
}

// ParseCmdline returns the pv_* and ph_* parameters of a kernel command
// line, in order, with their keys as written ("pv_log.level"). Other
// parameters are ignored. Splitting follows the kernel: whitespace
// separates parameters except inside double quotes, and the quotes
// themselves are dropped, so pv_x="a b" and "pv_x=a b" both give "a b"; an
// unterminated quote runs to the end of the line. A parameter without '='
// has an empty value. It never fails: the kernel accepted the line already.
// pv_rev (CmdlineRev) is no setting and is left out.
func ParseCmdline(cmdline string) []Pair {
	var pairs []Pair
	for _, tok := range splitCmdline(cmdline) {
		k, v, _ := strings.Cut(tok, "=")
		if k != CmdlineRev && (hasPrefixFold(k, pvPrefix) || hasPrefixFold(k, phPrefix)) {
			pairs = append(pairs, Pair{Key: k, Value: v})
		}
	}
	return pairs
}

// ModuleParams returns the module parameters a kernel command line sets,
// as kmod's modprobe takes them: "softdog.soft_margin=30" gives softdog
// "soft_margin=30". The kernel applies such parameters itself only to
// built-in modules and does not pass them to init, so a loader of modules
// must. Module names are keyed with dashes as underscores, as modules are
// named; several parameters of one module are joined by a space in the
// order given, each as finit_module(2) parses it: a value with blanks is
// quoted again, a parameter without '=' is a boolean set. Parsing stops at
// "--", after which the line is init's. Tokens without a module name or a
// parameter are left out.
func ModuleParams(cmdline string) map[string]string {
	out := map[string]string{}
	for _, tok := range splitCmdline(cmdline) {
		if tok == "--" {
			break
		}
		k, v, hasValue := strings.Cut(tok, "=")
		mod, param, ok := strings.Cut(k, ".")
		if !ok || mod == "" || param == "" {
			continue
		}
		arg := param
		if hasValue {
			if strings.IndexFunc(v, func(r rune) bool { return r < 0x80 && isCmdlineSpace(byte(r)) }) >= 0 {
				v = `"` + v + `"`
			}
			arg += "=" + v
		}
		mod = strings.ReplaceAll(mod, "-", "_")
		if prev := out[mod]; prev != "" {
			arg = prev + " " + arg
		}
		out[mod] = arg
	}
	return out
}

func splitCmdline(s string) []string {
	var (
		toks    []string
		b       strings.Builder
		inQuote bool
		inTok   bool
	)
	flush := func() {
		if inTok {
			toks = append(toks, b.String())
		}
		b.Reset()
		inTok = false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			inQuote = !inQuote
			inTok = true
		case !inQuote && isCmdlineSpace(c):
			flush()
		default:
			b.WriteByte(c)
			inTok = true
		}
	}
	flush()
	return toks
}

// isCmdlineSpace is the kernel's isspace for the ASCII range.
func isCmdlineSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// ParseEnviron returns the PV_* and PH_* variables (prefix in any case, as
// upstream) of an environment in os.Environ form, in order. Entries without
// '=' are ignored, and so is pv_rev (CmdlineRev): the kernel hands init
// the command line's unknown parameters as variables, the boot script's
// pv_rev= among them.
func ParseEnviron(environ []string) []Pair {
	var pairs []Pair
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || len(k) <= len("PV_") || k == CmdlineRev {
			continue
		}
		if hasPrefixFold(k, "PV_") || hasPrefixFold(k, "PH_") {
			pairs = append(pairs, Pair{Key: k, Value: v})
		}
	}
	return pairs
}

// Package lxcconf translates upstream LXC container configs
// (lxc.container.conf, which upstream's pvr tool writes into every container)
// into the runtime-neutral spec.Container.
//
// What a container needs to run is translated; keys LXC knows but that have
// no meaning here are accepted with a warning, so configs written for
// upstream Pantavisor keep working unchanged. Malformed values are errors that
// name the line and the key, because a container started from a half-read
// config fails later in ways much harder to trace.
package lxcconf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/pantavisor/pv/spec"
)

// Warning is something in the config that was accepted but not translated
// (an unknown, ignored or deprecated key) or translated differently from
// what the line seems to say.
type Warning struct {
	// Line is the first line (1-based) the warning applies to; further
	// lines with the same key and message are named in Msg.
	Line int
	// Key is the key as written in the file.
	Key string
	Msg string
}

// String formats the warning as "line N: key: msg".
func (w Warning) String() string {
	return fmt.Sprintf("line %d: %s: %s", w.Line, displayKey(w.Key), w.Msg)
}

// SyntaxError is a line of an LXC config that cannot be translated: it is
// malformed or its value is invalid for its key. Parse joins one per bad
// line with errors.Join, so errors.As finds the first.
type SyntaxError struct {
	Line int
	// Key is the key as written in the file; "" when the line has none.
	Key string
	Err error
}

// Error formats the error as "line N: key: what is wrong".
func (e *SyntaxError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("line %d: %s: %v", e.Line, displayKey(e.Key), e.Err)
}

// Unwrap returns the underlying error, which may itself wrap a parse error
// from the standard library (addresses, for instance).
func (e *SyntaxError) Unwrap() error { return e.Err }

// displayKey quotes keys that would garble a log line (control bytes,
// invalid UTF-8) and leaves ordinary ones readable.
func displayKey(k string) string {
	if q := strconv.Quote(k); q[1:len(q)-1] != k || k == "" {
		return q
	}
	return k
}

// Parse reads an LXC config and translates it. Every malformed line is
// reported, each as a *SyntaxError joined into the returned error; on error
// no spec and no warnings are returned, so a caller cannot run a container
// from a partly understood config. Warnings are ordered by line and each
// (key, message) pair appears once.
//
// Parse has no revision to read included files from, so an lxc.include line
// refuses the container (spec.Container.Unenforceable); ParseIncludes reads
// them.
func Parse(r io.Reader) (*spec.Container, []Warning, error) {
	return ParseIncludes(r, nil)
}

// Opener opens a file an lxc.include line names. name is a clean,
// slash-separated path relative to the container's directory in the
// revision, never absolute and never starting with "..": the opener looks it
// up among the revision's files and must not resolve it on the host.
type Opener func(name string) (io.ReadCloser, error)

// maxIncludeDepth bounds nested lxc.include lines. LXC has no limit, but a
// config from a revision is untrusted input and a deep chain is a mistake.
const maxIncludeDepth = 8

// maxIncludeSize bounds the config and each file it includes, for the
// same reason: a "config" key naming a big object (the root volume, say)
// must not make PID 1 read all of it.
const maxIncludeSize = 1 << 20

// maxIncludedTotal bounds what the files a config includes (and the
// seccomp profiles it names) add up to, each read counted every time it
// is read: room for the deepest chain of the largest files. Depth and
// size alone do not bound it: a file that includes another a thousand
// times, which includes a third a thousand times, is a million reads of
// the third from a few kilobytes of revision, and eight such levels
// never end.
const maxIncludedTotal = maxIncludeDepth * maxIncludeSize

// ParseIncludes is Parse with lxc.include honoured as LXC does: the included
// file's lines are read in place of the include line. Only files of the
// container's own directory in the revision can be included (open finds
// them); an absolute path or one leaving that directory, a file the revision
// does not have, an include loop or nesting deeper than maxIncludeDepth are
// errors on the lxc.include line. Errors and warnings from an included file
// are reported on the top-level include line and name the file and its line.
// A config larger than maxIncludeSize is an error too, and so are included
// files and seccomp profiles adding up to more than maxIncludedTotal bytes,
// each counted at every read (the error stops the parse). A nil open
// behaves as Parse.
func ParseIncludes(r io.Reader, open Opener) (*spec.Container, []Warning, error) {
	return parseIncludes(r, open, maxIncludedTotal)
}

// parseIncludes is ParseIncludes with budget in place of maxIncludedTotal
// (the fuzz target's is smaller, so that its runs stay fast).
func parseIncludes(r io.Reader, open Opener, budget int) (*spec.Container, []Warning, error) {
	p := newParser()
	p.open = open
	p.budget = budget
	lr := &io.LimitedReader{R: r, N: maxIncludeSize + 1}
	if err := p.parseReader(lr); err != nil {
		return nil, nil, err
	}
	if lr.N == 0 {
		return nil, nil, fmt.Errorf("lxc config is larger than %d bytes", maxIncludeSize)
	}
	c := p.finish()
	if len(p.errs) > 0 {
		return nil, nil, errors.Join(p.errs...)
	}
	return c, p.warnings(), nil
}

func (p *parser) parseReader(r io.Reader) error {
	br := bufio.NewReader(r)
	for n := 1; !p.overBudget; n++ {
		line, err := br.ReadString('\n')
		if line != "" {
			p.parseLine(n, line)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read lxc config: %w", err)
		}
	}
	return nil
}

// netState is one lxc.net.N block while it is being read.
type netState struct {
	spec.NetInterface
	firstLine int
	firstKey  string
}

type parser struct {
	c    spec.Container
	errs []error

	warns     []Warning
	warnIndex map[[2]string]int
	warnMore  map[int][]int

	envIndex map[string]int
	nets     map[int]*netState
	// legacyNet is the interface unindexed lxc.network.* keys apply to:
	// the one the last lxc.network.type started; -1 before any.
	legacyNet int
	// keepNone records "none" in lxc.cap.keep, which LXC reads as "keep no
	// capability" rather than as an empty (unset) list.
	keepNone    bool
	capDropLine int
	capDropKey  string

	// open reads included files; nil when there is no revision to read
	// them from.
	open Opener
	// includes is the chain of files being included, outermost first,
	// to find loops.
	includes []string
	// incLine and incWhere place what an included file says: the
	// top-level lxc.include line, and "file line N: file2" down to the
	// file being read. incWhere is "" in the top-level file.
	incLine  int
	incWhere string
	// included counts the bytes of every included file and profile
	// read so far, against budget (maxIncludedTotal); overBudget stops
	// the parse once it is reached, so that the lines still to come
	// (more of the same includes) are neither read nor each reported.
	included   int
	budget     int
	overBudget bool
}

func newParser() *parser {
	return &parser{
		warnIndex: map[[2]string]int{},
		warnMore:  map[int][]int{},
		envIndex:  map[string]int{},
		nets:      map[int]*netState{},
		legacyNet: -1,
	}
}

// entry is one "key = value" line.
type entry struct {
	line int
	key  string // as written, for messages
	name string // canonical key, after legacy aliases
	val  string
}

func (p *parser) fail(line int, key string, err error) {
	if p.incWhere != "" {
		err = fmt.Errorf("%s line %d: %s: %w", p.incWhere, line, displayKey(key), err)
		line, key = p.incLine, "lxc.include"
	}
	p.errs = append(p.errs, &SyntaxError{Line: line, Key: key, Err: err})
}

// warn records a warning once per (key, message); repeats only add their
// line, so a config with the same unknown key a hundred times stays readable.
func (p *parser) warn(line int, key, msg string) {
	if p.incWhere != "" {
		msg = fmt.Sprintf("%s line %d: %s: %s", p.incWhere, line, displayKey(key), msg)
		line, key = p.incLine, "lxc.include"
	}
	id := [2]string{key, msg}
	if i, ok := p.warnIndex[id]; ok {
		p.warnMore[i] = append(p.warnMore[i], line)
		return
	}
	p.warnIndex[id] = len(p.warns)
	p.warns = append(p.warns, Warning{Line: line, Key: key, Msg: msg})
}

// maxListedLines bounds how many repeat lines a warning names.
const maxListedLines = 10

func (p *parser) warnings() []Warning {
	if len(p.warns) == 0 {
		return nil
	}
	out := make([]Warning, len(p.warns))
	for i, w := range p.warns {
		if more := p.warnMore[i]; len(more) > 0 {
			shown := more
			if len(shown) > maxListedLines {
				shown = shown[:maxListedLines]
			}
			s := make([]string, len(shown))
			for j, l := range shown {
				s[j] = strconv.Itoa(l)
			}
			list := strings.Join(s, ", ")
			if extra := len(more) - len(shown); extra > 0 {
				list += fmt.Sprintf(" and %d more", extra)
			}
			word := "lines"
			if len(more) == 1 {
				word = "line"
			}
			w.Msg += " (also on " + word + " " + list + ")"
		}
		out[i] = w
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

// blanks are the separators LXC itself trims and splits on.
const blanks = " \t"

func (p *parser) parseLine(n int, raw string) {
	raw = strings.TrimSuffix(raw, "\n")
	raw = strings.TrimSuffix(raw, "\r")
	if n == 1 {
		raw = strings.TrimPrefix(raw, "\uFEFF")
	}
	s := strings.Trim(raw, blanks)
	if s == "" || s[0] == '#' {
		return
	}
	k, v, ok := strings.Cut(s, "=")
	k = strings.TrimRight(k, blanks)
	if !ok {
		if strings.HasPrefix(s, "lxc.") {
			p.fail(n, s, errors.New(`missing "=" between key and value`))
			return
		}
		// LXC skips lines that are not lxc.* keys without complaint, so
		// configs that work upstream may carry such junk.
		p.warn(n, truncate(s, 64), `not a "key = value" line, ignored`)
		return
	}
	if k == "" {
		p.fail(n, "", errors.New(`missing key before "="`))
		return
	}
	if strings.IndexByte(s, 0) >= 0 {
		p.fail(n, k, errors.New("contains a NUL byte"))
		return
	}
	p.set(n, k, strings.Trim(v, blanks))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// dequote strips one pair of matching quotes around a whole value, as LXC
// does for every key before interpreting it.
func dequote(v string) string {
	if len(v) > 1 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

func (p *parser) set(n int, key, val string) {
	e := entry{line: n, key: key, name: key, val: val}
	var deprecated string
	switch {
	case legacyKeys[key] != "":
		e.name = legacyKeys[key]
		deprecated = "deprecated name of " + e.name
	case key == "lxc.network" || strings.HasPrefix(key, "lxc.network."):
		name, msg, err := p.legacyNetKey(key, val)
		if err != nil {
			p.fail(n, key, err)
			return
		}
		e.name, deprecated = name, msg
	}
	if e.name != "lxc.init.cmd" {
		// lxc.init.cmd keeps its quotes: they delimit arguments there.
		e.val = dequote(e.val)
	}

	if msg, ok := ignoredMsg(e.name); ok {
		if deprecated != "" {
			msg = deprecated + "; " + msg
		}
		p.warn(n, key, msg)
		return
	}
	if deprecated != "" {
		p.warn(n, key, deprecated)
	}

	if why, ok := p.unenforceable(e.name); ok {
		// Confinement asked for and not enforced would be a silent
		// downgrade: the container is refused instead, saying why.
		where := fmt.Sprintf("%s (line %d)", key, n)
		if p.incWhere != "" {
			where = fmt.Sprintf("lxc.include (line %d): %s line %d: %s", p.incLine, p.incWhere, n, key)
		}
		p.c.Unenforceable = append(p.c.Unenforceable, where+": "+why)
		return
	}

	var err error
	switch {
	case e.name == "lxc.include":
		// Not in handlers: include parses lines, which use handlers.
		err = p.include(e)
	case handlers[e.name] != nil:
		err = handlers[e.name](p, e)
	case e.name == "lxc.net" || strings.HasPrefix(e.name, "lxc.net."):
		err = p.setNet(e)
	case e.name == "lxc.cgroup" || strings.HasPrefix(e.name, "lxc.cgroup."):
		err = p.setCgroup(e, 1, strings.TrimPrefix(strings.TrimPrefix(e.name, "lxc.cgroup"), "."))
	case e.name == "lxc.cgroup2" || strings.HasPrefix(e.name, "lxc.cgroup2."):
		err = p.setCgroup(e, 2, strings.TrimPrefix(strings.TrimPrefix(e.name, "lxc.cgroup2"), "."))
	default:
		p.warn(n, key, "unknown key")
	}
	if err != nil {
		p.fail(n, key, err)
	}
}

// handlers translate the keys with a fixed name; lxc.net.* and
// lxc.cgroup*.* carry an index or a file name and are dispatched by prefix.
var handlers = map[string]func(*parser, entry) error{
	"lxc.init.cmd":     (*parser).setInitCmd,
	"lxc.init.cwd":     (*parser).setInitCwd,
	"lxc.init.uid":     func(p *parser, e entry) error { return setID(&p.c.UID, e.val) },
	"lxc.init.gid":     func(p *parser, e entry) error { return setID(&p.c.GID, e.val) },
	"lxc.environment":  (*parser).setEnv,
	"lxc.mount.entry":  (*parser).setMountEntry,
	"lxc.mount.auto":   (*parser).setMountAuto,
	"lxc.cap.drop":     (*parser).setCapDrop,
	"lxc.cap.keep":     (*parser).setCapKeep,
	"lxc.no_new_privs": (*parser).setNoNewPrivs,
	"lxc.apparmor.profile": func(p *parser, e entry) error {
		p.c.AppArmorProfile = strings.TrimSpace(e.val)
		return nil
	},
	"lxc.apparmor.allow_incomplete": func(*parser, entry) error { return nil },
	"lxc.apparmor.allow_nesting":    func(*parser, entry) error { return nil },
	"lxc.uts.name":                  (*parser).setUTSName,
	"lxc.namespace.keep":            (*parser).setNamespaceKeep,
	"lxc.tty.max":                   func(p *parser, e entry) error { return setCount(&p.c.TTYMax, e.val) },
	"lxc.pty.max":                   func(p *parser, e entry) error { return setCount(&p.c.PTYMax, e.val) },
	"lxc.rootfs.path":               (*parser).setRootfs,
	"lxc.seccomp.profile":           (*parser).setSeccompProfile,
	// LXC skips its profile when it already runs under a seccomp filter,
	// unless allow_nesting is 1. The profile is always loaded here: a
	// filter stacked on another only confines more.
	"lxc.seccomp.allow_nesting": func(p *parser, e entry) error {
		var nesting bool
		return setFlag(&nesting, e.val)
	},
	"lxc.idmap": (*parser).setIDMap,
}

// finish assembles the container from what was read and adds the warnings
// that depend on the whole file.
func (p *parser) finish() *spec.Container {
	c := p.c
	if len(c.CapKeep) == 0 && p.keepNone {
		c.CapKeep = []string{"none"}
	}
	if len(c.CapKeep) > 0 && len(c.CapDrop) > 0 {
		// LXC refuses to start such a container; we follow the spec's
		// rule (keep wins) but say so.
		p.warn(p.capDropLine, p.capDropKey, "ignored because lxc.cap.keep is set")
	}

	idx := make([]int, 0, len(p.nets))
	for i := range p.nets {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		ns := p.nets[i]
		if ns.Type == "" {
			// A zeroed LXC netdev is of type empty: a loopback-only netns.
			ns.Type = "empty"
			p.warn(ns.firstLine, ns.firstKey, fmt.Sprintf("lxc.net.%d.type not set, using empty as LXC does", i))
		}
		ni := ns.NetInterface
		ni.IPv4 = nilIfEmpty(ni.IPv4)
		c.Net = append(c.Net, ni)
	}

	c.Args = nilIfEmpty(c.Args)
	c.Env = nilIfEmpty(c.Env)
	c.MountAuto = nilIfEmpty(c.MountAuto)
	c.CapDrop = nilIfEmpty(c.CapDrop)
	c.CapKeep = nilIfEmpty(c.CapKeep)
	c.NamespaceKeep = nilIfEmpty(c.NamespaceKeep)
	c.DevicesAllow = nilIfEmpty(c.DevicesAllow)
	c.DevicesDeny = nilIfEmpty(c.DevicesDeny)
	if len(c.Mounts) == 0 {
		c.Mounts = nil
	}
	if len(c.Cgroup) == 0 {
		c.Cgroup = nil
	}
	return &c
}

// nilIfEmpty makes "reset, then nothing added" indistinguishable from
// "never set", so callers and tests compare one form.
func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

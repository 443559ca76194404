package state

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Problem is one finding about a state: an error that makes it invalid, or a
// warning that does not. File is the state key of the document it was found
// in ("web/run.json", "device.json"; "" for the state itself) and Path the
// key path inside that document ("auto_recovery.max_retries",
// `groups[1] ("app").timeout`). An array element in a path carries its name
// next to its index, as itemPath writes it, so that a person finds the item
// without counting.
type Problem struct {
	File string
	Path string
	Msg  string
	// Secureboot marks a problem of the revision's signatures, which
	// upstream reports apart ("Secureboot: ...").
	Secureboot bool
}

// String renders the problem the way `pantavisor validate` prints it:
// "web/run.json: auto_recovery.max_retries: must be >= 0".
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Where is the problem's location without its message, for tests and
// programs that match on the key path.
func (p Problem) Where() string {
	switch {
	case p.File == "":
		return p.Path
	case p.Path == "":
		return p.File
	}
	return p.File + ": " + p.Path
}

// InvalidError is returned when a state has one or more errors. It carries
// every error found in one pass, so that a user fixes them all at once
// instead of one per attempt.
type InvalidError struct {
	Problems []Problem
}

func (e *InvalidError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid state: " + e.Problems[0].String()
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return fmt.Sprintf("invalid state: %d errors:\n%s", len(e.Problems), strings.Join(lines, "\n"))
}

// collector gathers errors and warnings during one parse.
type collector struct {
	errs  []Problem
	warns []Problem
	// errFiles holds the files errs names.
	errFiles map[string]bool
}

func (c *collector) errorf(file, path, format string, args ...any) {
	c.errs = append(c.errs, Problem{File: file, Path: path, Msg: fmt.Sprintf(format, args...)})
	if c.errFiles == nil {
		c.errFiles = map[string]bool{}
	}
	c.errFiles[file] = true
}

func (c *collector) warnf(file, path, format string, args ...any) {
	c.warns = append(c.warns, Problem{File: file, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// sortProblems orders problems by file, then path, so that output does not
// depend on map iteration order; messages keep their relative order.
func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		return ps[i].Path < ps[j].Path
	})
}

// joinPath appends a key to a dotted key path.
func joinPath(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

// indexPath appends an array index to a key path.
func indexPath(base string, i int) string {
	return fmt.Sprintf("%s[%d]", base, i)
}

// itemPath is the key path of array element i of base, labelled with the
// element's name when it has one: `groups[1] ("app")`. Every problem about
// an element of a named list (groups, disks, ingress rules, exported and
// required services) uses it, so that messages name the item, not only its
// position.
func itemPath(base string, i int, name string) string {
	if name == "" {
		return indexPath(base, i)
	}
	return fmt.Sprintf("%s[%d] (%s)", base, i, strconv.Quote(truncate(name, 40)))
}

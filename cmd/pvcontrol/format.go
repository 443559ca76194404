package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pantavisor/pv/messages"
)

// now is the clock ages and uptimes are computed against; tests fix it.
var now = time.Now

// table lays cells out in columns two spaces apart, as text/tabwriter
// did here (its padding 2, widths in runes, the last cell of a line
// unpadded); rows are kept until Flush writes them at once. It replaced
// tabwriter for its cost in a process that prints one table and exits.
type table struct {
	w io.Writer
	// cells holds the rows one after another; ends[i] is where row i
	// ends in it. One slice for all rows rather than one per row: in a
	// process that lives for one table every fresh page its heap touches
	// is a page fault, about 13 µs each on the development machine.
	cells []string
	ends  []int
}

func newTable(w io.Writer) *table { return &table{w: w} }

// grow makes room for rows more rows of cols cells.
func (t *table) grow(rows, cols int) {
	t.cells = slices.Grow(t.cells, rows*cols)
	t.ends = slices.Grow(t.ends, rows)
}

// row adds one table line; cells are cleaned so a tab or newline in a
// server string cannot break the columns.
func row(t *table, cells ...string) {
	for _, c := range cells {
		t.cells = append(t.cells, cell(c))
	}
	t.ends = append(t.ends, len(t.cells))
}

// rows calls f with each row's cells.
func (t *table) rows(f func(r []string)) {
	start := 0
	for _, end := range t.ends {
		f(t.cells[start:end])
		start = end
	}
}

// Flush writes the table, in one write of a buffer of the exact size.
func (t *table) Flush() error {
	var widths []int
	size := 0
	t.rows(func(r []string) {
		for i, c := range r {
			size += len(c)
			if i == len(r)-1 {
				break
			}
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
		size++ // newline
	})
	t.rows(func(r []string) {
		for i, c := range r[:max(len(r)-1, 0)] {
			size += widths[i] - utf8.RuneCountInString(c) + 2
		}
	})
	b := make([]byte, 0, size)
	t.rows(func(r []string) {
		for i, c := range r {
			b = append(b, c...)
			if i < len(r)-1 {
				for pad := widths[i] - utf8.RuneCountInString(c) + 2; pad > 0; pad-- {
					b = append(b, ' ')
				}
			}
		}
		b = append(b, '\n')
	})
	_, err := t.w.Write(b)
	return err
}

var cellCleaner = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ")

func cell(s string) string {
	if s == "" {
		return "-"
	}
	return cellCleaner.Replace(s)
}

// writeContainers prints GET /containers as a table.
func writeContainers(w io.Writer, cs []messages.ContainerInfo, at time.Time) error {
	tw := newTable(w)
	tw.grow(len(cs)+1, 8)
	row(tw, "NAME", "GROUP", "STATUS", "GOAL", "POLICY", "PID", "UPTIME", "LAST-EXIT")
	for _, c := range cs {
		pid, uptime := "", ""
		// A container that does not run has no meaningful uptime.
		if c.Pid != 0 {
			pid = strconv.Itoa(c.Pid)
			uptime = duration(time.Duration(c.UptimeSecs) * time.Second)
		}
		row(tw, c.Name, c.Group, string(c.Status), c.StatusGoal, c.RestartPolicy, pid, uptime, lastExit(c.LastExit, at))
	}
	return tw.Flush()
}

// lastExit is "code 1, 3m05s ago" or "signal 9, 12s ago".
func lastExit(e *messages.Exit, at time.Time) string {
	if e == nil {
		return ""
	}
	s := "code " + strconv.Itoa(e.Code)
	if e.Signal != 0 {
		s = "signal " + strconv.Itoa(e.Signal)
	}
	if !e.At.IsZero() {
		s += ", " + duration(at.Sub(e.At)) + " ago"
	}
	return s
}

// writeGroups prints GET /groups as a table.
func writeGroups(w io.Writer, gs []messages.GroupInfo) error {
	tw := newTable(w)
	row(tw, "NAME", "GOAL", "POLICY", "STATUS")
	for _, g := range gs {
		row(tw, g.Name, g.StatusGoal, g.RestartPolicy, string(g.Status))
	}
	return tw.Flush()
}

// writeTree prints GET /actors, one actor per line, indented under its
// parent. RESTARTS counts restarts of what the actor supervises (a
// container's process); ACTOR-RESTARTS counts the actor's own restarts
// after panics. The free-text LAST-FAILURE comes last.
func writeTree(w io.Writer, root *messages.Node, at time.Time) error {
	tw := newTable(w)
	row(tw, "ACTOR", "KIND", "STATUS", "RESTARTS", "ACTOR-RESTARTS", "UPTIME", "INFO", "LAST-FAILURE")
	var walk func(n *messages.Node, parent string, depth int)
	walk = func(n *messages.Node, parent string, depth int) {
		name := n.Path
		if parent != "" {
			name = strings.TrimPrefix(n.Path, parent+"/")
		}
		uptime := ""
		if !n.Since.IsZero() {
			uptime = duration(at.Sub(n.Since))
		}
		row(tw, strings.Repeat("  ", depth)+name, n.Kind, n.Status,
			strconv.Itoa(n.Restarts), strconv.Itoa(n.ActorRestarts), uptime,
			info(n.Info), failure(n, at))
		for _, c := range n.Children {
			if c != nil {
				walk(c, n.Path, depth+1)
			}
		}
	}
	walk(root, "", 0)
	return tw.Flush()
}

// info renders an actor's key facts as k=v, pid first, then by key.
func info(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "pid":
			return -1
		case b == "pid":
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v := m[k]
		if v == "" || strings.ContainsAny(v, " =\"") {
			v = strconv.Quote(v)
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}

// failure is "12s ago: reason", or the reason alone when it has no time.
func failure(n *messages.Node, at time.Time) string {
	if n.LastFailure == "" {
		return ""
	}
	if n.LastFailureAt == nil || n.LastFailureAt.IsZero() {
		return n.LastFailure
	}
	return duration(at.Sub(*n.LastFailureAt)) + " ago: " + n.LastFailure
}

// duration is compact and keeps two units at most: 12s, 3m05s, 2h03m, 4d07h.
func duration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

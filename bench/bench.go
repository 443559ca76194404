// Package bench is the harness behind `make bench`: every figure an issue asks
// for is registered here with the baseline it is compared against, measured
// in the same run, and printed as one table (figure, this project, baseline,
// ratio, goal). Speed is measured, never asserted: a figure that misses its
// goal is reported, not failed.
package bench

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// Figure is one measured comparison.
type Figure struct {
	// Name says what is measured, e.g. "validate largest upstream fixture".
	Name string
	// Baseline names what it is compared against.
	Baseline string
	// Unit of the two values ("ns/op", "ms", "MB").
	Unit string
	// Goal is the target ratio (ours/baseline); 0 when there is none.
	// It is a ceiling, unless Higher is set.
	Goal float64
	// Higher says a larger value is better (requests/s): Goal is then a
	// floor the ratio should reach, not a ceiling.
	Higher bool
	// Run measures once and returns this project's value and the baseline's,
	// each measured by itself (never negative: see Measure).
	Run func() (ours, baseline float64, err error)
	// Needs lists what the figure requires (see Unmet for the names); the
	// runner skips it with a reason when one is not met.
	Needs []string
	// Limit is an absolute goal for this project's value, in Unit, for
	// figures whose issue states one (e.g. RSS ≤ 30 MB) rather than a
	// ratio; 0 when there is none. The goal column shows it instead of Goal.
	Limit float64
	// Runs, when not 0, replaces the runner's run count: 1 for a figure
	// that is the same on every run, such as a binary's size.
	Runs int
}

// Result is a figure's median over several runs.
type Result struct {
	Figure
	Ours, Base float64
	Runs       int
	Err        error
	// Skipped says why the figure was not measured ("" when it was).
	Skipped string
}

// Ratio is ours divided by the baseline.
func (r Result) Ratio() float64 {
	if r.Base == 0 {
		return 0
	}
	return r.Ours / r.Base
}

var registry []Figure

// Register adds a figure; called from init functions of figure files.
func Register(f Figure) { registry = append(registry, f) }

// Figures returns the registered figures in registration order.
func Figures() []Figure { return append([]Figure(nil), registry...) }

// needChecks maps a need to its check, which returns why it is not met.
var needChecks = map[string]func() string{
	"root": func() string {
		if os.Geteuid() != 0 {
			return "needs root"
		}
		return ""
	},
	// Figures that start containers, mount and create cgroups must run as
	// PID 1 of fresh pid, net and mount namespaces: whatever they leave
	// behind dies with them and the host's network is out of reach.
	"pid1": func() string {
		if os.Getpid() != 1 {
			return "needs to run as PID 1 of fresh namespaces (make bench: unshare --pid --net --mount --fork --mount-proc bin/pvbench)"
		}
		return ""
	},
}

// RegisterNeed adds a named check for Figure.Needs; check returns why the
// need is not met, or "".
func RegisterNeed(name string, check func() string) { needChecks[name] = check }

// Unmet returns why f cannot be measured here, or "" when every need is
// met. Needs are "root", "pid1", "exec:NAME" (a program in PATH) and those
// added with RegisterNeed.
func Unmet(f Figure) string {
	var why []string
	for _, n := range f.Needs {
		if prog, ok := strings.CutPrefix(n, "exec:"); ok {
			if _, err := exec.LookPath(prog); err != nil {
				why = append(why, "needs "+prog+" in PATH (scripts/deps.sh bench)")
			}
			continue
		}
		check, ok := needChecks[n]
		if !ok {
			why = append(why, "unknown need "+strconv.Quote(n))
			continue
		}
		if w := check(); w != "" {
			why = append(why, w)
		}
	}
	return strings.Join(why, "; ")
}

// Measure runs f runs times (f.Runs when set) and keeps the medians of both
// values, so that one disturbed run (the machine has two cores shared with
// everything else) does not decide the figure. A figure whose needs are
// not met is skipped, not run; a run that returns a negative, NaN or
// infinite value fails the figure (ErrBadValue), so that the table only
// shows what was measured.
func Measure(f Figure, runs int) Result {
	if why := Unmet(f); why != "" {
		return Result{Figure: f, Skipped: why}
	}
	if f.Runs > 0 {
		runs = f.Runs
	}
	var ours, base []float64
	for i := 0; i < runs; i++ {
		var o, b float64
		var err error
		offMain(func() { o, b, err = f.Run() })
		if err == nil {
			err = checkValues(o, b)
		}
		if err != nil {
			return Result{Figure: f, Err: err, Runs: i}
		}
		ours = append(ours, o)
		base = append(base, b)
		// Each run's pair, for a figure whose machine drifts between
		// runs: the ratio within a run is steadier than each side.
		if b != 0 {
			logf("run %d: %.4g against %.4g (%.2f×)", i+1, o, b, o/b)
		}
	}
	return Result{Figure: f, Ours: median(ours), Base: median(base), Runs: runs}
}

// offMain runs f on a goroutine of its own and waits for it. The caller
// is mostly main's goroutine, which initshim locks to the main thread; a
// figure's client loop run there pays a hand-off between threads each
// time it is scheduled (a futex wake and sleep), which no client on a
// device pays: in the unix round trip, some 8 µs of the 12.5 µs direct
// path, on both sides alike, which drew the ratio towards 1.
func offMain(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

// ErrBadValue means a figure's run returned a value no measurement can
// have: every figure is a duration, size, count or share, so a negative
// value (or NaN) comes from arithmetic on measurements, such as the
// difference of two noisy totals, not from measuring.
var ErrBadValue = errors.New("not a measurement")

func checkValues(ours, base float64) error {
	for _, v := range []struct {
		side string
		v    float64
	}{{"this project", ours}, {"baseline", base}} {
		if v.v < 0 || math.IsNaN(v.v) || math.IsInf(v.v, 0) {
			return fmt.Errorf("%s value %v: %w", v.side, v.v, ErrBadValue)
		}
	}
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// NsPerOp runs fn under the testing package's benchmark driver and returns
// nanoseconds per operation; it picks the iteration count itself.
func NsPerOp(fn func(b *testing.B)) float64 {
	r := testing.Benchmark(fn)
	if r.N == 0 {
		return 0
	}
	return float64(r.T.Nanoseconds()) / float64(r.N)
}

// Print writes the results as an aligned table.
func Print(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tTHIS PROJECT\tBASELINE\tRATIO\tGOAL\tRUNS")
	for _, r := range results {
		switch {
		case r.Skipped != "":
			fmt.Fprintf(tw, "%s\tskipped: %s\t%s\t-\t%s\t0\n", r.Name, r.Skipped, r.Baseline, r.goal())
			continue
		case r.Err != nil:
			fmt.Fprintf(tw, "%s\terror: %s\t%s\t-\t%s\t%d\n", r.Name, short(r.Err), r.Baseline, r.goal(), r.Runs)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s %s (%s)\t%.2f×\t%s\t%d\n", r.Name,
			num(r.Ours), r.Unit, num(r.Base), r.Unit, r.Baseline, r.Ratio(), r.goal(), r.Runs)
	}
	tw.Flush()
}

// short is the first line of an error, cut to fit a table cell; the runner
// prints errors in full as they happen.
func short(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	if r := []rune(s); len(r) > 160 {
		s = string(r[:160]) + "…"
	}
	return s
}

func (r Result) goal() string {
	switch {
	case r.Limit != 0:
		return "≤ " + strconv.FormatFloat(r.Limit, 'g', -1, 64) + " " + r.Unit
	case r.Goal != 0 && r.Higher:
		return fmt.Sprintf("≥ %.2g×", r.Goal)
	case r.Goal != 0:
		return fmt.Sprintf("≤ %.2g×", r.Goal)
	}
	return "-"
}

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return strings.TrimRight(fmt.Sprintf("%.4f", v), "0")
}

// Verbose makes figures report details (a breakdown of where time goes)
// on standard error; set by the runner.
var Verbose bool

// logf writes a detail line when Verbose is set.
func logf(format string, args ...any) {
	if Verbose {
		fmt.Fprintf(os.Stderr, "  "+format+"\n", args...)
	}
}

// Elapsed measures one call of fn.
func Elapsed(fn func() error) (time.Duration, error) {
	start := time.Now()
	err := fn()
	return time.Since(start), err
}

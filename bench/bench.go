// Package bench is the harness behind `make bench`: every figure an issue asks
// for is registered here with the baseline it is compared against, measured
// in the same run, and printed as one table (figure, this project, baseline,
// ratio, goal). Speed is measured, never asserted: a figure that misses its
// goal is reported, not failed.
package bench

import (
	"fmt"
	"io"
	"sort"
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
	Goal float64
	// Run measures once and returns this project's value and the baseline's.
	Run func() (ours, baseline float64, err error)
	// Needs lists what the figure requires ("root", "namespaces"); the
	// runner skips it with a reason when not met.
	Needs []string
}

// Result is a figure's median over several runs.
type Result struct {
	Figure
	Ours, Base float64
	Runs       int
	Err        error
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

// Measure runs f runs times and keeps the medians of both values, so that one
// disturbed run (the machine has two cores shared with everything else) does
// not decide the figure.
func Measure(f Figure, runs int) Result {
	var ours, base []float64
	for i := 0; i < runs; i++ {
		o, b, err := f.Run()
		if err != nil {
			return Result{Figure: f, Err: err, Runs: i}
		}
		ours = append(ours, o)
		base = append(base, b)
	}
	return Result{Figure: f, Ours: median(ours), Base: median(base), Runs: runs}
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
		if r.Err != nil {
			fmt.Fprintf(tw, "%s\terror: %v\t%s\t-\t%s\t%d\n", r.Name, r.Err, r.Baseline, goal(r.Goal), r.Runs)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s %s (%s)\t%.2f×\t%s\t%d\n", r.Name,
			num(r.Ours), r.Unit, num(r.Base), r.Unit, r.Baseline, r.Ratio(), goal(r.Goal), r.Runs)
	}
	tw.Flush()
}

func goal(g float64) string {
	if g == 0 {
		return "-"
	}
	return fmt.Sprintf("≤ %.2g×", g)
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

// Elapsed measures one call of fn.
func Elapsed(fn func() error) (time.Duration, error) {
	start := time.Now()
	err := fn()
	return time.Since(start), err
}

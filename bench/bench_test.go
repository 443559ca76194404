package bench

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestMeasureTakesMedians(t *testing.T) {
	vals := [][2]float64{{5, 1}, {100, 2}, {3, 3}}
	i := 0
	r := Measure(Figure{Name: "f", Run: func() (float64, float64, error) {
		v := vals[i]
		i++
		return v[0], v[1], nil
	}}, 3)
	if r.Ours != 5 || r.Base != 2 || r.Ratio() != 2.5 || r.Runs != 3 {
		t.Fatalf("got %+v ratio %v", r, r.Ratio())
	}
}

func TestMeasureStopsOnError(t *testing.T) {
	r := Measure(Figure{Name: "f", Run: func() (float64, float64, error) { return 0, 0, errors.New("no root") }}, 5)
	if r.Err == nil || r.Runs != 0 {
		t.Fatalf("got %+v", r)
	}
}

func TestMeasureRejectsImpossibleValues(t *testing.T) {
	for _, v := range [][2]float64{{-0.24, 25}, {1, -1}, {math.NaN(), 1}, {math.Inf(1), 1}} {
		r := Measure(Figure{Name: "f", Run: func() (float64, float64, error) { return v[0], v[1], nil }}, 3)
		if !errors.Is(r.Err, ErrBadValue) || r.Runs != 0 {
			t.Errorf("values %v: got %+v", v, r)
		}
	}
	if r := Measure(Figure{Name: "f", Run: func() (float64, float64, error) { return 0, 0, nil }}, 1); r.Err != nil {
		t.Errorf("zero values: %v", r.Err)
	}
}

func TestPrint(t *testing.T) {
	var b bytes.Buffer
	Print(&b, []Result{
		{Figure: Figure{Name: "validate", Baseline: "json", Unit: "µs", Goal: 3}, Ours: 30, Base: 10, Runs: 5},
		{Figure: Figure{Name: "broken", Baseline: "x"}, Err: errors.New("boom")},
		{Figure: Figure{Name: "served", Baseline: "bare", Unit: "req/s", Goal: 0.8, Higher: true}, Ours: 9, Base: 10, Runs: 5},
	})
	out := b.String()
	for _, want := range []string{"FIGURE", "validate", "3.00×", "≤ 3×", "error: boom", "0.90×", "≥ 0.8×"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestValidateFigureRuns(t *testing.T) {
	FixturesDir = "../testdata/upstream-pvtx"
	for _, f := range Figures() {
		if strings.HasPrefix(f.Name, "validate") {
			ours, base, err := f.Run()
			if err != nil || ours <= 0 || base <= 0 {
				t.Fatalf("%s: %v %v %v", f.Name, ours, base, err)
			}
			return
		}
	}
	t.Fatal("validate figure not registered")
}

func TestMeasureSkipsUnmetNeeds(t *testing.T) {
	ran := false
	f := Figure{Name: "f", Needs: []string{"exec:pvbench-no-such-program", "no-such-need"}, Run: func() (float64, float64, error) {
		ran = true
		return 1, 1, nil
	}}
	r := Measure(f, 3)
	if ran || r.Err != nil || r.Runs != 0 {
		t.Fatalf("figure with unmet needs was run: %+v", r)
	}
	for _, want := range []string{"pvbench-no-such-program", `unknown need "no-such-need"`} {
		if !strings.Contains(r.Skipped, want) {
			t.Errorf("skip reason %q lacks %q", r.Skipped, want)
		}
	}
}

func TestMeasureFigureRuns(t *testing.T) {
	n := 0
	r := Measure(Figure{Name: "f", Runs: 1, Run: func() (float64, float64, error) { n++; return 2, 1, nil }}, 5)
	if n != 1 || r.Runs != 1 {
		t.Fatalf("ran %d times, result %+v", n, r)
	}
}

func TestPrintLimitAndSkip(t *testing.T) {
	var b bytes.Buffer
	Print(&b, []Result{
		{Figure: Figure{Name: "rss", Baseline: "idle", Unit: "MiB", Limit: 30}, Ours: 25, Base: 20, Runs: 5},
		{Figure: Figure{Name: "cold", Baseline: "runc", Goal: 0.5}, Skipped: "needs root"},
		{Figure: Figure{Name: "long", Baseline: "x"}, Err: errors.New("first line\nsecond line")},
	})
	out := b.String()
	for _, want := range []string{"≤ 30 MiB", "1.25×", "skipped: needs root", "≤ 0.5×", "error: first line"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "second line") {
		t.Errorf("table cell holds a multi-line error:\n%s", out)
	}
}

package bench

import (
	"errors"
	"math"
	"slices"
	"testing"
)

// abba runs a run's sides a b b a, and b a a b on every other run, so that
// neither side always goes first; it stops at the first error.
func TestAbbaOrder(t *testing.T) {
	var runs int
	var order []string
	side := func(name string) func() error { return func() error { order = append(order, name); return nil } }
	for range 2 {
		if err := abba(&runs, side("a"), side("b")); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"a", "b", "b", "a", "b", "a", "a", "b"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	order = nil
	boom := errors.New("boom")
	if err := abba(&runs, side("a"), func() error { order = append(order, "b"); return boom }); !errors.Is(err, boom) || len(order) != 2 {
		t.Errorf("after an error: %v, sides run %v", err, order)
	}
}

// A side's rate over its two turns is its work over its time: the
// harmonic mean of the turns' rates, not their mean.
func TestAbbaRatesHarmonicMean(t *testing.T) {
	var runs int
	rates := map[string][]float64{"a": {100, 300}, "b": {200, 200}}
	next := func(name string) func() (float64, error) {
		return func() (float64, error) {
			r := rates[name][0]
			rates[name] = rates[name][1:]
			return r, nil
		}
	}
	ra, rb, err := abbaRates(&runs, next("a"), next("b"))
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(ra-150) > 1e-9 || math.Abs(rb-200) > 1e-9 {
		t.Errorf("rates %v %v, want 150 (1/((1/100+1/300)/2)) and 200", ra, rb)
	}
}

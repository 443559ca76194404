package storage

import (
	"math"
	"testing"
)

func TestSpaceArithmetic(t *testing.T) {
	const mib = 1 << 20
	s := Space{Free: 30 * mib, Total: 100 * mib}
	for _, c := range []struct {
		name       string
		reserved   int
		n          int64
		available  int64
		fits       bool
		percentArg int
		percent    int64
	}{
		{"default reserve", 5, 25 * mib, 25 * mib, true, 5, 5 * mib},
		{"one byte over", 5, 25*mib + 1, 25 * mib, false, 5, 5 * mib},
		{"no reserve", 0, 30 * mib, 30 * mib, true, 0, 0},
		{"reserve above free", 40, 1, 0, false, 40, 40 * mib},
		{"reserve of everything", 100, 0, 0, true, 100, 100 * mib},
		{"out of range is clamped", 250, 1, 0, false, -3, 0},
	} {
		if got := s.Available(c.reserved); got != c.available {
			t.Errorf("%s: Available(%d) = %d, want %d", c.name, c.reserved, got, c.available)
		}
		if got := s.Fits(c.n, c.reserved); got != c.fits {
			t.Errorf("%s: Fits(%d, %d) = %v, want %v", c.name, c.n, c.reserved, got, c.fits)
		}
		if got := s.Percent(c.percentArg); got != c.percent {
			t.Errorf("%s: Percent(%d) = %d, want %d", c.name, c.percentArg, got, c.percent)
		}
	}
	// A size whose product with a percentage overflows int64.
	huge := Space{Free: math.MaxInt64, Total: math.MaxInt64}
	if got, want := huge.Percent(50), int64(math.MaxInt64/2); got < want-1 || got > want+1 {
		t.Errorf("Percent(50) of MaxInt64 = %d, want about %d", got, want)
	}
	// Percent rounds down: 5 % of 1999 bytes is 99.95.
	if got := (Space{Total: 1999}).Percent(5); got != 99 {
		t.Errorf("5 %% of 1999 = %d, want 99", got)
	}
}

func TestSpaceBelow(t *testing.T) {
	s := Space{Free: 10, Total: 100}
	for threshold, want := range map[int]bool{0: false, 5: false, 10: false, 11: true, 100: true} {
		if got := s.Below(threshold); got != want {
			t.Errorf("10 of 100 free below %d %% = %v, want %v", threshold, got, want)
		}
	}
	if (Space{}).Below(0) {
		t.Error("a threshold of 0 is off, even on an empty filesystem")
	}
}

func TestStatSpace(t *testing.T) {
	s, err := StatSpace(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if s.Total <= 0 || s.Free < 0 || s.Free > s.Total {
		t.Fatalf("StatSpace = %+v", s)
	}
	if _, err := StatSpace("/nonexistent/storage"); err == nil {
		t.Fatal("StatSpace of a missing path: no error")
	}
	if got := mulSat(math.MaxInt64/2, 4); got != math.MaxInt64 {
		t.Errorf("mulSat overflow = %d", got)
	}
	if got := mulSat(-1, 4); got != 0 {
		t.Errorf("mulSat(-1, 4) = %d", got)
	}
}

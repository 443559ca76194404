package throttle

import (
	"testing"
	"time"
)

func TestOnePerInterval(t *testing.T) {
	th := Every(time.Hour)
	if n, ok := th.Event(); !ok || n != 1 {
		t.Fatalf("first event: %d, %v; want 1, let through", n, ok)
	}
	for range 3 {
		if _, ok := th.Event(); ok {
			t.Fatal("an event within the interval was let through")
		}
	}
	th.last = th.last.Add(-time.Hour) // the interval passed
	if n, ok := th.Event(); !ok || n != 4 {
		t.Errorf("after the interval: %d, %v; want 4 (three held back and this one), let through", n, ok)
	}
}

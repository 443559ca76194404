package actors

import (
	"context"
	"testing"
	"time"
)

// Alive ends when its context is cancelled, not only at its deadline:
// the watchdog's probe runs until the last kick plus most of the timeout
// (12.5 s with the default 15 s), and Guard.Enter cancels the probe in
// flight and waits for it when a phase disarms the watchdog. Found by
// review: a probe of a busy root ran on to its deadline.
func TestAliveEndsWhenItsContextIsCancelled(t *testing.T) {
	sys := startSystem(t, threeGroups(t, 30), newFakeEngine())
	release := make(chan struct{})
	defer close(release)
	sys.sys.Root.Send(sys.root, hang{until: release})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	err := sys.Alive(ctx)
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("Alive returned %v after %v, its context cancelled after 50ms: want it to end with its context", err, took.Round(time.Millisecond))
	}
}

package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The write-back after the tree's stop is waited for while it goes on,
// and given up at its bound when it does not end (a dying disk): the
// watchdog's last kick must come.
func TestSyncBounded(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	ran := false
	syncBounded(func() { time.Sleep(50 * time.Millisecond); ran = true }, time.Minute, log)
	if !ran {
		t.Fatal("returned before the sync ended")
	}
	hang := make(chan struct{})
	defer close(hang)
	start := time.Now()
	syncBounded(func() { <-hang }, 100*time.Millisecond, log)
	if waited := time.Since(start); waited > 30*time.Second {
		t.Fatalf("a sync that never ends held it %v", waited)
	}
	if !strings.Contains(logged.String(), "write-back has not ended") {
		t.Errorf("the sync given up is not logged:\n%s", logged.String())
	}
	syncBounded(func() { panic("a sync's bug") }, time.Minute, log)
	if !strings.Contains(logged.String(), "sync panicked") {
		t.Errorf("a panic in the sync is not logged:\n%s", logged.String())
	}
}

package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Before the actor tree is made, the probe passes: on a first boot for
// good (the watchdog was not armed before), on a restart for its grace
// only, after which a supervisor that makes no tree is taken for hung.
func TestTreeProbeBeforeTheTree(t *testing.T) {
	ctx := context.Background()
	first := &treeProbe{start: time.Now().Add(-time.Hour)}
	if err := first.Alive(ctx); err != nil {
		t.Fatalf("first boot, no tree yet: %v, want nil", err)
	}
	restart := &treeProbe{start: time.Now(), grace: time.Minute}
	if err := restart.Alive(ctx); err != nil {
		t.Fatalf("restart within its grace: %v, want nil", err)
	}
	restart.start = time.Now().Add(-2 * time.Minute)
	err := restart.Alive(ctx)
	if err == nil || !strings.Contains(err.Error(), "no actor tree 2m0s after the supervisor started") {
		t.Fatalf("restart past its grace: %v, want the hung start named", err)
	}
}

// The watchdog's logger writes to the console until the log file is
// open, then to what replaced it.
func TestHandlerSwitch(t *testing.T) {
	var a, b bytes.Buffer
	s := &handlerSwitch{}
	s.set(slog.NewTextHandler(&a, nil))
	log := slog.New(s)
	log.Info("armed")
	s.set(slog.NewTextHandler(&b, nil))
	log.Warn("kicked late")
	if !strings.Contains(a.String(), "armed") || strings.Contains(a.String(), "kicked late") {
		t.Errorf("first handler got %q", a.String())
	}
	if !strings.Contains(b.String(), "kicked late") || strings.Contains(b.String(), "armed") {
		t.Errorf("second handler got %q", b.String())
	}
}

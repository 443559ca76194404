package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/config"
	"github.com/pantavisor/pv/watchdog"
)

// watchdogDevice is the kernel's watchdog device.
const watchdogDevice = "/dev/watchdog"

// restartGrace is how long a supervisor that PID 1 started again may take
// to make its actor tree while the watchdog is kicked for it. Its
// predecessor died with the device open, so the timer runs from its last
// kick: the new one arms the watchdog as soon as it has read the
// configuration, before the bootloader, the boot decision and the
// re-adoption, which together took longer than a 3 s softdog on a loaded
// board and reset it. A restart that makes no tree within this grace is
// hung: the kicks stop and the board resets.
const restartGrace = 2 * time.Minute

// treeProbe is the watchdog's probe: the actor tree, once it is made.
// Before that the main goroutine is making it, and the probe passes, for
// grace since start when grace is not 0.
type treeProbe struct {
	live  atomic.Pointer[actors.System]
	start time.Time
	grace time.Duration
}

func (p *treeProbe) Alive(ctx context.Context) error {
	if s := p.live.Load(); s != nil {
		return s.Alive(ctx)
	}
	if d := time.Since(p.start); p.grace > 0 && d > p.grace {
		return fmt.Errorf("no actor tree %v after the supervisor started", d.Round(time.Second))
	}
	return nil
}

// newWatchdogGuard is the guard of the hardware watchdog, on a device only
// (an appengine host's own watchdog is not ours to drive), as cfg sets it.
func newWatchdogGuard(cfg *config.Config, embedded bool, probe *treeProbe, log *slog.Logger) *watchdog.Guard {
	g := &watchdog.Guard{Mode: watchdog.Disabled, Log: log, Probe: probe.Alive,
		Open: func(t int) (io.WriteCloser, int, error) {
			f, took, err := watchdog.Open(watchdogDevice, t)
			if err != nil {
				return nil, 0, err
			}
			return f, took, nil
		}}
	if !embedded {
		return g
	}
	var err error
	if g.Mode, err = watchdog.ParseMode(cfg.String(config.PVWDTMode)); err != nil {
		log.Error("watchdog not used", "err", err)
	}
	g.Timeout = int(cfg.Duration(config.PVWDTTimeout) / time.Second)
	return g
}

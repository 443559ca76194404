// Package watchdog drives the kernel watchdog device (/dev/watchdog) for
// pantavisor as PID 1: when it is open, whether kicks continue (only while the
// actor tree answers), and whether it may be magic-closed on a clean stop.
package watchdog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"
)

// Mode is PV_WDT_MODE: when the watchdog is armed.
type Mode int

const (
	// Disabled never opens the device.
	Disabled Mode = iota
	// Shutdown arms the watchdog only while shutting down, so a hung
	// shutdown still ends in a reset.
	Shutdown
	// Startup arms it from boot until the revision has booted.
	Startup
	// Always keeps it armed for the whole life of the device.
	Always
)

// ParseMode reads a PV_WDT_MODE value; empty means disabled.
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "disabled":
		return Disabled, nil
	case "shutdown":
		return Shutdown, nil
	case "startup":
		return Startup, nil
	case "always":
		return Always, nil
	}
	return Disabled, fmt.Errorf("PV_WDT_MODE %q: want disabled, shutdown, startup or always", s)
}

// Phase is where the device is in its life.
type Phase int

const (
	// Booting: before the revision reached its goals.
	Booting Phase = iota
	// Running: the revision booted.
	Running
	// Stopping: shutdown for reboot or poweroff has begun.
	Stopping
	// Stopped: the actor tree has stopped for the reboot or power-off;
	// what is left is the supervisor's exit (syncing and unmounting the
	// storage) and PID 1's reboot. The tree answers still, but it no
	// longer tells whether the device gets on: a watchdog open for
	// Stopping stays open and is kicked no more (Guard.Enter), so that a
	// device whose end hangs (a sync on a dying disk) is reset.
	Stopped
)

// Armed says whether the watchdog must be open in this phase.
func (m Mode) Armed(p Phase) bool {
	switch m {
	case Always:
		return true
	case Startup:
		return p == Booting
	case Shutdown:
		return p == Stopping || p == Stopped
	}
	return false
}

// Liveness asks the actor tree whether it still answers; an error (or a
// timeout through ctx) stops the kicks so the hardware resets a hung device.
type Liveness func(ctx context.Context) error

// Kicker writes keep-alives to an open watchdog device.
type Kicker struct {
	Dev      io.WriteCloser
	Interval time.Duration // a fraction of the timeout, e.g. timeout/3
	// Timeout is the device's. A probe may answer until the hardware
	// would reset: the last kick (the device's opening, at first) plus
	// Timeout, less half an Interval for the kick itself. An actor tree
	// that is slow but answers (containers starting on a loaded board)
	// is kicked in time; one that does not answer for about Timeout is
	// not. With it zero, a probe has one Interval.
	Timeout time.Duration
	Probe   Liveness
	// Log, when set, is told of each kick that came later than two
	// Intervals after the one before: the board came within a third of
	// its timeout of a reset. The warning says whether the probe (the
	// actor tree) or the kicker itself (a stalled process or machine)
	// took the time, which is what a device maker needs to know first.
	Log *slog.Logger
}

// Run kicks until ctx ends or the probe fails. It returns the probe error
// that stopped the kicks, or nil when ctx ended. A panic is recovered and
// returned: this runs in PID 1.
func (k *Kicker) Run(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("watchdog kicker panicked: %v\n%s", r, debug.Stack())
		}
	}()
	if k.Interval <= 0 {
		return fmt.Errorf("watchdog kick interval %v: must be positive", k.Interval)
	}
	t := time.NewTicker(k.Interval)
	defer t.Stop()
	last := time.Now() // the device was opened just before: its timer runs
	for {
		deadline := time.Now().Add(k.Interval)
		if k.Timeout > k.Interval/2 {
			deadline = last.Add(k.Timeout - k.Interval/2)
		}
		pctx, cancel := context.WithDeadline(ctx, deadline)
		probed := time.Now()
		perr := k.Probe(pctx)
		cancel()
		took := time.Since(probed)
		if ctx.Err() != nil {
			return nil
		}
		if perr != nil {
			// Stop kicking on purpose: the device resets the machine.
			return fmt.Errorf("actor tree not live, watchdog kicks stopped: %w", perr)
		}
		if _, werr := k.Dev.Write([]byte{0}); werr != nil {
			return fmt.Errorf("kick watchdog: %w", werr)
		}
		now := time.Now()
		if gap := now.Sub(last); k.Log != nil && gap > 2*k.Interval {
			k.Log.Warn("watchdog kicked late", "since_last_kick", gap.Round(time.Millisecond),
				"probe_took", took.Round(time.Millisecond), "timeout", k.Timeout)
		}
		last = now
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Close disarms the watchdog with the magic 'V' when allowed (a clean stop
// and a mode that does not want the watchdog armed afterwards); otherwise it
// closes without it, leaving the timer running.
func Close(dev io.WriteCloser, magic bool) error {
	if magic {
		if _, err := dev.Write([]byte{'V'}); err != nil {
			dev.Close()
			return fmt.Errorf("magic close of watchdog: %w", err)
		}
	}
	if err := dev.Close(); err != nil {
		return fmt.Errorf("close watchdog: %w", err)
	}
	return nil
}

package watchdog

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Guard keeps the watchdog as the mode wants it in each phase of the
// device: it opens the device and starts kicking when the phase arms it,
// and magic-closes it when the phase disarms it. When the probe fails the
// kicks stop for good and the device is left open: the hardware resets a
// device whose actor tree no longer answers. In Stopped the kicks stop for
// good too, after a last one: the hardware resets a device that has not
// rebooted within one timeout of its actor tree's stop.
type Guard struct {
	Mode    Mode
	Timeout int // seconds (PV_WDT_TIMEOUT)
	// Open opens the device with a timeout and returns the timeout it
	// took (Open of this package on "/dev/watchdog").
	Open  func(timeoutSec int) (io.WriteCloser, int, error)
	Probe Liveness
	Log   *slog.Logger

	mu     sync.Mutex
	dev    io.WriteCloser
	took   int // the device's timeout, seconds
	cancel context.CancelFunc
	done   chan struct{}
	// hung: the kicks stopped for good (a probe failed, or Stopped).
	hung bool
}

// Enter moves the guard to phase p.
func (g *Guard) Enter(p Phase) {
	g.mu.Lock()
	defer g.mu.Unlock()
	armed := g.Mode.Armed(p)
	switch {
	case g.hung:
		// Kicks stopped on purpose: nothing may start them again.
	case p == Stopped:
		g.stopKicks()
	case armed && g.dev == nil:
		dev, took, err := g.Open(g.Timeout)
		if err != nil {
			g.Log.Warn("watchdog not armed", "err", err)
			return
		}
		g.dev, g.took = dev, took
		ctx, cancel := context.WithCancel(context.Background())
		g.cancel, g.done = cancel, make(chan struct{})
		interval := time.Duration(took) * time.Second / 3
		g.Log.Info("watchdog armed", "timeout_s", took, "kick_every", interval)
		go g.kick(ctx, &Kicker{Dev: dev, Interval: interval, Timeout: time.Duration(took) * time.Second, Probe: g.Probe, Log: g.Log}, g.done)
	case !armed && g.dev != nil:
		g.cancel()
		g.mu.Unlock()
		<-g.done
		g.mu.Lock()
		if g.hung || g.dev == nil {
			return
		}
		if err := Close(g.dev, true); err != nil {
			g.Log.Error("watchdog", "err", err)
		} else {
			g.Log.Info("watchdog disarmed")
		}
		g.dev = nil
	}
}

// stopKicks ends the kicks of an open device for good, with a last kick:
// what remains of the device's stop (its exit, the sync, PID 1's reboot)
// has one whole timeout, and the board resets when it takes longer. The
// device is left open without the magic close. Called with g.mu held.
func (g *Guard) stopKicks() {
	if g.dev == nil {
		return
	}
	g.cancel()
	g.mu.Unlock()
	<-g.done
	g.mu.Lock()
	if g.hung {
		return // the probe failed meanwhile: no last kick
	}
	g.hung = true
	if _, err := g.dev.Write([]byte{0}); err != nil {
		g.Log.Error("watchdog: last kick", "err", err)
	}
	g.Log.Info("watchdog: last kick; the board resets unless it reboots before the timeout", "timeout_s", g.took)
}

func (g *Guard) kick(ctx context.Context, k *Kicker, done chan struct{}) {
	defer close(done)
	if err := k.Run(ctx); err != nil {
		g.mu.Lock()
		g.hung = true
		g.mu.Unlock()
		g.Log.Error("watchdog: kicks stopped; the board resets when its timer ends", "err", err)
	}
}

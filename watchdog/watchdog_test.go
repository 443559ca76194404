package watchdog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseModeAndArmed(t *testing.T) {
	cases := []struct {
		in                               string
		want                             Mode
		boot, running, stopping, stopped bool
	}{
		{"", Disabled, false, false, false, false},
		{"disabled", Disabled, false, false, false, false},
		{"shutdown", Shutdown, false, false, true, true},
		{"Startup", Startup, true, false, false, false},
		{" always ", Always, true, true, true, true},
	}
	for _, c := range cases {
		m, err := ParseMode(c.in)
		if err != nil || m != c.want {
			t.Fatalf("ParseMode(%q) = %v, %v; want %v", c.in, m, err, c.want)
		}
		got := []bool{m.Armed(Booting), m.Armed(Running), m.Armed(Stopping), m.Armed(Stopped)}
		want := []bool{c.boot, c.running, c.stopping, c.stopped}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("mode %q phase %d armed = %v, want %v", c.in, i, got[i], want[i])
			}
		}
	}
	if _, err := ParseMode("sometimes"); err == nil || !strings.Contains(err.Error(), "sometimes") {
		t.Fatalf("bad mode error %v does not name the value", err)
	}
}

// fakeDev returns a regular file standing in for /dev/watchdog.
func fakeDev(t *testing.T) (*os.File, string) {
	p := filepath.Join(t.TempDir(), "watchdog")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	return f, p
}

func TestKickerKicksWhileLiveAndStopsWhenHung(t *testing.T) {
	f, p := fakeDev(t)
	defer f.Close()
	var probes atomic.Int32
	k := &Kicker{Dev: f, Interval: 5 * time.Millisecond, Probe: func(ctx context.Context) error {
		if probes.Add(1) > 3 {
			<-ctx.Done() // root hangs: the probe times out
			return ctx.Err()
		}
		return nil
	}}
	err := k.Run(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want the probe timeout", err)
	}
	b, _ := os.ReadFile(p)
	if len(b) != 3 {
		t.Fatalf("%d kicks written, want 3 (one per live probe, none after the hang)", len(b))
	}
}

// A probe slower than an interval, that answers before the hardware
// would reset, is kicked; one that does not answer by then stops the
// kicks, about a Timeout after the last kick. A probe that took more
// than its interval stopped the kicks for good: on the boot test's TCG
// machine (3 s softdog) a root actor busy for a second while three
// containers started had the board reset.
func TestKickerWaitsForASlowProbeUntilTheTimeout(t *testing.T) {
	f, p := fakeDev(t)
	defer f.Close()
	const interval = 20 * time.Millisecond
	var probes atomic.Int32
	var hungAt time.Time
	k := &Kicker{Dev: f, Interval: interval, Timeout: 3 * interval, Probe: func(ctx context.Context) error {
		switch probes.Add(1) {
		case 1, 2:
			// Slow, live: 1.5 intervals.
			select {
			case <-time.After(interval * 3 / 2):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		default:
			hungAt = time.Now()
			<-ctx.Done()
			return ctx.Err()
		}
	}}
	start := time.Now()
	err := k.Run(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want the hung probe's timeout", err)
	}
	if b, _ := os.ReadFile(p); len(b) != 2 {
		t.Fatalf("%d kicks written, want 2 (the slow live probes), none for the hung one", len(b))
	}
	if waited := time.Since(hungAt); waited > 6*interval {
		t.Errorf("the hung probe stopped the kicks after %v, more than the timeout %v", waited, 3*interval)
	}
	if took := time.Since(start); took < 5*interval {
		t.Errorf("Run returned after %v: the slow probes were not waited for", took)
	}
}

// A kick that comes more than two intervals after the one before is
// logged with how long the probe took, so a board that nearly reset says
// whether its actor tree or the whole process was slow. Kicks on time
// log nothing.
func TestKickerWarnsOfALateKick(t *testing.T) {
	f, _ := fakeDev(t)
	defer f.Close()
	const interval = 50 * time.Millisecond
	// Run logs from the goroutine that calls it, this one: the buffer
	// is read only after it returned.
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var probes atomic.Int32
	k := &Kicker{Dev: f, Interval: interval, Timeout: 10 * interval, Log: log, Probe: func(context.Context) error {
		switch probes.Add(1) {
		case 3:
			time.Sleep(4 * interval) // slow, live
		case 5:
			cancel()
		}
		return nil
	}}
	if err := k.Run(ctx); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if n := strings.Count(out, "watchdog kicked late"); n != 1 {
		t.Fatalf("%d late-kick warnings, want 1 (the slow probe's):\n%s", n, out)
	}
	m := regexp.MustCompile(`probe_took=(\d+)ms`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the warning does not give the probe's time in ms:\n%s", out)
	}
	if ms, _ := strconv.Atoi(m[1]); ms < 200 {
		t.Errorf("the warning gives the probe %dms, want 200ms or more:\n%s", ms, out)
	}
}

func TestKickerStopsOnContext(t *testing.T) {
	f, _ := fakeDev(t)
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	k := &Kicker{Dev: f, Interval: time.Millisecond, Probe: func(context.Context) error { cancel(); return nil }}
	if err := k.Run(ctx); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if err := (&Kicker{Dev: f, Probe: func(context.Context) error { return nil }}).Run(context.Background()); err == nil {
		t.Fatal("zero interval accepted")
	}
}

func TestKickerRecoversPanic(t *testing.T) {
	f, _ := fakeDev(t)
	defer f.Close()
	k := &Kicker{Dev: f, Interval: time.Millisecond, Probe: func(context.Context) error { panic("boom") }}
	if err := k.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Run = %v, want the recovered panic", err)
	}
}

func TestCloseMagic(t *testing.T) {
	for _, magic := range []bool{true, false} {
		f, p := fakeDev(t)
		if err := Close(f, magic); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		if magic != bytes.Equal(b, []byte("V")) {
			t.Errorf("magic=%v wrote %q", magic, b)
		}
	}
}

func TestOpenRejectsBadTimeoutAndNonDevice(t *testing.T) {
	if _, _, err := Open("/nonexistent", 0); err == nil || !strings.Contains(err.Error(), "PV_WDT_TIMEOUT") {
		t.Fatalf("Open with timeout 0 = %v", err)
	}
	_, p := fakeDev(t)
	if _, _, err := Open(p, 10); err == nil || !strings.Contains(err.Error(), "set watchdog timeout") {
		t.Fatalf("Open on a regular file = %v, want the ioctl error", err)
	}
}

// guardDev counts what the guard writes to the device.
type guardDev struct {
	mu     sync.Mutex
	kicks  int
	magic  bool
	closed bool
}

func (d *guardDev) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if bytes.Equal(p, []byte{'V'}) {
		d.magic = true
	} else {
		d.kicks++
	}
	return len(p), nil
}

func (d *guardDev) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return nil
}

func (d *guardDev) state() (int, bool, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.kicks, d.magic, d.closed
}

// startup mode: armed and kicking while booting, magic-closed once the
// revision runs.
func TestGuardArmsPerPhase(t *testing.T) {
	dev := &guardDev{}
	opened := 0
	g := &Guard{Mode: Startup, Timeout: 1, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Open:  func(int) (io.WriteCloser, int, error) { opened++; return dev, 1, nil },
		Probe: func(context.Context) error { return nil }}
	g.Enter(Booting)
	time.Sleep(50 * time.Millisecond)
	if k, _, _ := dev.state(); k == 0 || opened != 1 {
		t.Fatalf("booting: %d kicks, opened %d times", k, opened)
	}
	g.Enter(Running)
	if _, magic, closed := dev.state(); !magic || !closed {
		t.Fatalf("running: magic %v closed %v, want both", magic, closed)
	}
	g.Enter(Stopping)
	if opened != 1 {
		t.Fatalf("startup mode opened the device again when stopping")
	}
}

// A probe that fails stops the kicks for good and leaves the device open
// without the magic close: the hardware resets the board.
func TestGuardStopsKickingWhenHung(t *testing.T) {
	dev := &guardDev{}
	var fail atomic.Bool
	g := &Guard{Mode: Always, Timeout: 3, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Open: func(int) (io.WriteCloser, int, error) { return dev, 1, nil },
		Probe: func(context.Context) error {
			if fail.Load() {
				return errors.New("root not answering")
			}
			return nil
		}}
	g.Enter(Booting)
	time.Sleep(20 * time.Millisecond)
	fail.Store(true)
	time.Sleep(time.Second) // interval 1/3 s: a probe has failed by now
	k1, _, _ := dev.state()
	time.Sleep(700 * time.Millisecond)
	k2, magic, closed := dev.state()
	if k2 != k1 || k1 == 0 {
		t.Fatalf("kicks %d then %d: want some, then none", k1, k2)
	}
	g.Enter(Stopping)
	g.Enter(Running) // always: armed anyway; a hung guard never closes
	if magic || closed {
		t.Fatalf("hung watchdog closed (magic %v, closed %v)", magic, closed)
	}
}

// Once the actor tree has stopped, a watchdog open for the stop gets one
// last kick and no more, whatever the probe says (the tree answers still
// while the supervisor's exit may hang on a dead disk), and stays open
// without the magic close: the hardware resets a device that does not
// reboot within a timeout. A mode that does not arm the stop opens
// nothing.
func TestGuardStopsKickingOnceStopped(t *testing.T) {
	for _, mode := range []Mode{Shutdown, Always} {
		dev := &guardDev{}
		g := &Guard{Mode: mode, Timeout: 1, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Open:  func(int) (io.WriteCloser, int, error) { return dev, 1, nil },
			Probe: func(context.Context) error { return nil }}
		g.Enter(Running)
		g.Enter(Stopping)
		time.Sleep(50 * time.Millisecond)
		before, _, _ := dev.state()
		g.Enter(Stopped)
		k1, _, _ := dev.state()
		time.Sleep(time.Second) // interval 1/3 s: three kicks, had they gone on
		g.Enter(Stopping)       // nothing starts them again
		time.Sleep(500 * time.Millisecond)
		k2, magic, closed := dev.state()
		if before == 0 || k1 <= before || k2 != k1 {
			t.Errorf("mode %v: kicks %d while stopping, %d once stopped, %d a second later: want some, one more, then none", mode, before, k1, k2)
		}
		if magic || closed {
			t.Errorf("mode %v: stopped watchdog closed (magic %v, closed %v)", mode, magic, closed)
		}
	}
	for _, mode := range []Mode{Disabled, Startup} {
		opened := 0
		g := &Guard{Mode: mode, Timeout: 1, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Open:  func(int) (io.WriteCloser, int, error) { opened++; return &guardDev{}, 1, nil },
			Probe: func(context.Context) error { return nil }}
		g.Enter(Running)
		g.Enter(Stopping)
		g.Enter(Stopped)
		if opened != 0 {
			t.Errorf("mode %v opened the watchdog %d times for the stop", mode, opened)
		}
	}
}

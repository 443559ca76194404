package bench

import (
	"fmt"
	"runtime"
	"sync"
	"time"
)

// Soak is how long the crash-loop soak runs; 0 (the default) skips it.
// Set by the runner (pvbench -soak, -soakfor).
var Soak time.Duration

// soakN is the number of crashing containers of the soak.
const soakN = 10

// soakWindow is how long CPU use is averaged at the start and at the end;
// a soak shorter than four windows uses a quarter of its length instead.
const soakWindow = 30 * time.Second

// soakWindowLabel says in the soak rows how long a window was: the rows
// are registered before -soakfor is known.
var soakWindowLabel = soakWindow.String() + ", or ¼ of -soakfor if shorter"

func init() {
	RegisterNeed("soak", func() string {
		if Soak <= 0 {
			return "opt-in: make bench BENCHFLAGS=-soak (5 min; -soakfor sets the length)"
		}
		return ""
	})
	// The legacy policy (restart_policy container, no auto_recovery) is what
	// the issue asks for; it backs off from 100 ms doubling to 30 s and
	// resets only after 10 s up, so with runs of ~100 ms the restarts soon
	// come every 30 s: it soaks the steady, capped backoff. The second
	// soak restarts at once (always, retry_delay 0): a real crash loop of a
	// restart every ~100 ms per container, which stresses the restart path.
	for _, s := range []soakKind{
		{"legacy", "legacy policy", nil},
		{"always", "always, retry_delay 0", map[string]any{"auto_recovery": map[string]any{"policy": "always", "retry_delay": 0}}},
	} {
		what := fmt.Sprintf("crash-loop soak (%d × runs of ~100 ms, %s)", soakN, s.label)
		// The start samples are taken one window into the soak, not
		// at its start: the first window is the CPU baseline.
		Register(Figure{
			Name: what + ": RSS of the process running actors + engine after a GC, at the end", Baseline: "same, one window in (" + soakWindowLabel + ")", Unit: "MiB",
			Runs: 1, Needs: containerNeeds("soak"),
			Run: func() (float64, float64, error) { r, err := s.result(); return r.rssEnd, r.rssStart, err },
		})
		Register(Figure{
			Name: what + ": goroutines, at the end", Baseline: "same, one window in (" + soakWindowLabel + ")", Unit: "goroutines",
			Runs: 1, Needs: containerNeeds("soak"),
			Run: func() (float64, float64, error) { r, err := s.result(); return r.gorEnd, r.gorStart, err },
		})
		Register(Figure{
			Name: what + ": CPU % (own threads), last window", Baseline: "same, first window (" + soakWindowLabel + ")", Unit: "%",
			Runs: 1, Needs: containerNeeds("soak"),
			Run: func() (float64, float64, error) { r, err := s.result(); return r.cpuEnd, r.cpuStart, err },
		})
	}
}

type soakKind struct {
	name, label string
	run         map[string]any
}

type soakResult struct {
	rssStart, rssEnd float64 // MiB
	gorStart, gorEnd float64
	cpuStart, cpuEnd float64 // % of one core
}

// soaks memoizes each soak: its three figures share one run.
var (
	soakMu  sync.Mutex
	soakRes = map[string]*soakResult{}
	soakErr = map[string]error{}
)

func (s soakKind) result() (soakResult, error) {
	soakMu.Lock()
	defer soakMu.Unlock()
	if r, ok := soakRes[s.name]; ok {
		return *r, soakErr[s.name]
	}
	r, err := soak(s)
	soakRes[s.name], soakErr[s.name] = &r, err
	return r, err
}

// soak runs soakN containers whose init exits with 1 after ~100 ms under
// the actor system and the real engine in this process (as the
// supervisor runs them) for Soak, and samples this process's RSS,
// goroutines and CPU use at the start and at the end.
func soak(s soakKind) (res soakResult, err error) {
	window := min(soakWindow, Soak/4)
	f, err := newFixture()
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := f.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	var ctrs []benchCtr
	for i := range soakN {
		ctrs = append(ctrs, benchCtr{name: fmt.Sprintf("s%02d", i), cmd: `/bin/sh "-c" "sleep 0.1; exit 1"`,
			lxc: minimalInitLines, run: s.run})
		if s.run == nil {
			ctrs[i].run = map[string]any{"restart_policy": "container"}
		}
	}
	a, err := startActors(f, "soak-"+s.name, ctrs)
	if err != nil {
		return res, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = a.stop()
		}
	}()
	if err := waitFor("every container started", time.Minute, func() bool {
		for _, c := range ctrs {
			if _, ups, _ := a.rec.times(c.name); len(ups) == 0 {
				return false
			}
		}
		return true
	}); err != nil {
		return res, err
	}
	t0 := time.Now()
	sample := func() (rss float64, gor int) {
		runtime.GC() // what stays, not what the next GC would free
		return float64(selfStatus("VmRSS")["VmRSS"]) / 1024, goroutines()
	}
	cpu := func(from time.Time, c0 time.Duration) float64 {
		return 100 * float64(cpuTime()-c0) / float64(time.Since(from))
	}
	starts := func() int {
		n := 0
		for _, c := range ctrs {
			_, ups, _ := a.rec.times(c.name)
			n += len(ups)
		}
		return n
	}
	c0, w0 := cpuTime(), time.Now()
	time.Sleep(window)
	res.cpuStart = cpu(w0, c0)
	rss, gor := sample()
	res.rssStart, res.gorStart = rss, float64(gor)
	logf("soak %s: after %v: %d starts, RSS %.1f MiB, %d goroutines, CPU %.2f%%", s.name, time.Since(t0).Round(time.Second), starts(), rss, gor, res.cpuStart)
	for time.Since(t0) < Soak-window {
		time.Sleep(min(time.Minute, Soak-window-time.Since(t0)))
		rss, gor := sample()
		logf("soak %s: after %v: %d starts, RSS %.1f MiB, %d goroutines", s.name, time.Since(t0).Round(time.Second), starts(), rss, gor)
	}
	c0, w0 = cpuTime(), time.Now()
	time.Sleep(window)
	res.cpuEnd = cpu(w0, c0)
	rss, gor = sample()
	res.rssEnd, res.gorEnd = rss, float64(gor)
	logf("soak %s: end after %v: %d starts, RSS %.1f MiB, %d goroutines, CPU %.2f%%", s.name, time.Since(t0).Round(time.Second), starts(), rss, gor, res.cpuEnd)
	stopped = true
	return res, a.stop()
}

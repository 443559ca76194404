package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/internal/wire"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/supervision"
)

// restartsMeasured is the number of restarts the restart-latency figures
// time, after one that warms up.
const restartsMeasured = 50

// backoffRetries is the number of delayed retries the backoff figure times.
const backoffRetries = 20

func init() {
	for _, q := range []float64{50, 99} {
		Register(Figure{
			Name: fmt.Sprintf("auto-recovery restart latency p%.0f: exit → new init running (actors + engine, always, retry_delay 0, %d restarts)",
				q, restartsMeasured),
			Baseline: fmt.Sprintf("bare libcontainer Create+Run of the same rootfs (p%.0f of %d)", q, restartsMeasured),
			Unit:     "ms",
			Goal:     1.2,
			Needs:    containerNeeds(),
			Run:      func() (float64, float64, error) { return restartLatency(q) },
		})
	}
	Register(Figure{
		Name:     fmt.Sprintf("auto-recovery backoff error p99: |actual − computed delay| over %d retries (on-failure, retry_delay 1 s, factor 1)", backoffRetries),
		Baseline: "computed delay (supervision.Delay)",
		Unit:     "ms",
		Limit:    20,
		Runs:     1, // 20 s of retries
		Needs:    containerNeeds(),
		Run:      backoffError,
	})
}

// recorder wraps the engine the actors drive and records, per container,
// when each Start was called and returned and when each run's init exited
// (Exit.At: when the driver reaped it). It sees the real path: the actors
// decide, the engine mounts and starts.
type recorder struct {
	inner actors.Engine
	mu    sync.Mutex
	calls map[string][]time.Time
	ups   map[string][]time.Time
	exits map[string][]time.Time
}

func newRecorder(inner actors.Engine) *recorder {
	return &recorder{inner: inner, calls: map[string][]time.Time{}, ups: map[string][]time.Time{}, exits: map[string][]time.Time{}}
}

func (r *recorder) add(m map[string][]time.Time, name string, at time.Time) {
	r.mu.Lock()
	m[name] = append(m[name], at)
	r.mu.Unlock()
}

// times returns copies of a container's start calls, starts and exits.
func (r *recorder) times(name string) (calls, ups, exits []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.calls[name]...), append([]time.Time(nil), r.ups[name]...), append([]time.Time(nil), r.exits[name]...)
}

func (r *recorder) Mount(c *state.Container) (actors.Mount, error) {
	return recEngine{inner: r.inner, r: r}.Mount(c)
}

// Close releases the wrapped engine's images (engine.Engine.Close), as
// root does once the engine's revision is gone.
func (r *recorder) Close() error { return recEngine{inner: r.inner, r: r}.Close() }

// engine returns inner recording into r: the engines of successive
// revisions (a non-reboot update, a rollback's reboot) share one record.
func (r *recorder) engine(inner actors.Engine) actors.Engine { return recEngine{inner: inner, r: r} }

type recEngine struct {
	inner actors.Engine
	r     *recorder
}

func (e recEngine) Mount(c *state.Container) (actors.Mount, error) {
	m, err := e.inner.Mount(c)
	if err != nil {
		return nil, err
	}
	return recMount{Mount: m, r: e.r, name: c.Name}, nil
}

func (e recEngine) Close() error { return e.inner.Close() }

type recMount struct {
	actors.Mount
	r    *recorder
	name string
}

func (m recMount) Start(lease *messages.Lease) (actors.Run, error) {
	m.r.add(m.r.calls, m.name, time.Now())
	run, err := m.Mount.Start(lease)
	if err != nil {
		return nil, err
	}
	m.r.add(m.r.ups, m.name, time.Now())
	return recRun{Run: run, r: m.r, name: m.name}, nil
}

type recRun struct {
	actors.Run
	r    *recorder
	name string
}

func (r recRun) Wait() messages.Exit {
	ex := r.Run.Wait()
	at := ex.At
	if at.IsZero() {
		at = time.Now()
	}
	r.r.add(r.r.exits, r.name, at)
	return ex
}

// actorRun is a revision run by the actor system in this process, on the
// real engine, wired as cmd/pantavisor wires it.
type actorRun struct {
	ef  *engineFixture
	rec *recorder
	sys *actors.System
}

func startActors(f *fixture, name string, ctrs []benchCtr) (*actorRun, error) {
	ef, err := newEngineFixture(f, name, ctrs)
	if err != nil {
		return nil, err
	}
	rec := newRecorder(wire.Engine(ef.eng))
	sys, err := actors.Start(actors.Config{Rev: "0", State: ef.st, Engine: rec,
		Log: quietLog(), StopTimeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("start actors: %w", err)
	}
	return &actorRun{ef: ef, rec: rec, sys: sys}, nil
}

// waitFor polls cond every millisecond until it holds or timeout passes.
func waitFor(what string, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// stop shuts the actor system down (every container stopped and
// unmounted) and checks the driver left no cgroup.
func (a *actorRun) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := a.sys.Shutdown(ctx, "bench done")
	// A start that a stop overtook is undone by the container actor in a
	// goroutine Shutdown does not wait for (actors/container.go
	// runStarted): give it a moment, and say when it was needed.
	t0 := time.Now()
	if werr := waitFor("the driver's cgroups to go", 5*time.Second, func() bool {
		return len(cgroupDirs(a.ef.cgroupParent)) == 0
	}); werr == nil && time.Since(t0) > 5*time.Millisecond {
		logf("cgroups of %s went %v after Shutdown returned", a.ef.cgroupParent, time.Since(t0).Round(time.Millisecond))
	}
	if left := cgroupDirs(a.ef.cgroupParent); len(left) > 0 {
		ents, _ := os.ReadDir(left[len(left)-1])
		var names []string
		for _, e := range ents {
			if e.IsDir() {
				names = append(names, e.Name())
			}
		}
		procs, _ := os.ReadFile(left[len(left)-1] + "/cgroup.procs")
		logf("left in %s: dirs %v, procs %q", left[len(left)-1], names, procs)
	}
	return errors.Join(err, a.ef.cleanup())
}

// restartLatency times restartsMeasured restarts of /bin/true under the
// policy always with no delay, from the exit of a run to the return of the
// next Start (its init executed), and returns their q-th percentile and
// the same percentile of as many bare libcontainer starts of the same
// image, in ms: a start's own spread (scheduling, the kernel's work) is in
// both.
func restartLatency(q float64) (ours, base float64, err error) {
	f, err := newFixture()
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, f.close()) }()
	a, err := startActors(f, "restart", []benchCtr{{name: "r", cmd: "/bin/true", lxc: minimalInitLines,
		run: map[string]any{"auto_recovery": map[string]any{"policy": "always", "retry_delay": 0}}}})
	if err != nil {
		return 0, 0, err
	}
	// One start, one warm-up restart, then the measured ones.
	werr := waitFor(fmt.Sprintf("%d restarts", restartsMeasured+1), time.Minute, func() bool {
		_, ups, _ := a.rec.times("r")
		return len(ups) >= restartsMeasured+2
	})
	if err := errors.Join(werr, a.stop()); err != nil {
		return 0, 0, err
	}
	_, ups, exits := a.rec.times("r")
	var lat []float64
	for i := 2; i < len(ups) && i-1 < len(exits) && len(lat) < restartsMeasured; i++ {
		lat = append(lat, float64(ups[i].Sub(exits[i-1]))/1e6)
	}
	time.Sleep(settle)
	root, err := f.mountedOnce()
	if err != nil {
		return 0, 0, err
	}
	var bare []float64
	err = withoutInit(func() (err error) {
		bare, err = bareStarts(f, root, restartsMeasured)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	logf("restart latency over %d restarts: p50 %.2f ms, p99 %.2f ms, max %.2f ms; bare Create+Run p50 %.2f ms, p99 %.2f ms, max %.2f ms",
		len(lat), percentile(lat, 50), percentile(lat, 99), percentile(lat, 100), percentile(bare, 50), percentile(bare, 99), percentile(bare, 100))
	return percentile(lat, q), percentile(bare, q), nil
}

// bareStarts returns the times, in ms, of n libcontainer Create+Run of
// /bin/true on root (after one warm-up); waiting for the exit and
// destroying are not timed.
func bareStarts(f *fixture, root string, n int) ([]float64, error) {
	stateRoot := f.dir + "/bare-start/libcontainer"
	if err := os.MkdirAll(stateRoot, 0o700); err != nil {
		return nil, fmt.Errorf("bare start: %w", err)
	}
	cgroupParent := "pvbench-bares-" + f.tag
	id := "bares-" + f.tag
	var ms []float64
	for i := 0; i <= n; i++ {
		t0 := time.Now()
		ct, err := libcontainer.Create(stateRoot, id, bareConfig(root, id, cgroupParent))
		if err != nil {
			return nil, fmt.Errorf("bare start: %w", err)
		}
		p := &libcontainer.Process{Args: []string{"/bin/true"}, Cwd: "/", Init: true,
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}
		if err := ct.Run(p); err != nil {
			return nil, errors.Join(fmt.Errorf("bare start: %w", err), ct.Destroy())
		}
		el := time.Since(t0)
		_, werr := p.Wait()
		if err := errors.Join(werr, ct.Destroy()); err != nil {
			return nil, fmt.Errorf("bare start: %w", err)
		}
		if i > 0 {
			ms = append(ms, float64(el)/1e6)
		}
	}
	return ms, removeCgroups(cgroupParent)
}

// backoffError runs a container that fails at once under on-failure with
// a 1 s constant delay and returns the 99th percentile of |actual −
// computed| over backoffRetries retries, the actual delay being the time
// from an exit to the call of the next Start, and the computed delay.
func backoffError() (ours, base float64, err error) {
	f, err := newFixture()
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, f.close()) }()
	a, err := startActors(f, "backoff", []benchCtr{{name: "b", cmd: `/bin/sh "-c" "exit 1"`, lxc: minimalInitLines,
		run: map[string]any{"auto_recovery": map[string]any{"policy": "on-failure", "retry_delay": 1, "backoff_factor": 1.0}}}})
	if err != nil {
		return 0, 0, err
	}
	policy := supervision.PolicyFor(a.ef.st.Containers[0], 0)
	werr := waitFor(fmt.Sprintf("%d retries", backoffRetries), 2*time.Minute, func() bool {
		calls, _, _ := a.rec.times("b")
		return len(calls) >= backoffRetries+1
	})
	if err := errors.Join(werr, a.stop()); err != nil {
		return 0, 0, err
	}
	calls, _, exits := a.rec.times("b")
	var errs, signed []float64
	for n := 1; n < len(calls) && n-1 < len(exits) && len(errs) < backoffRetries; n++ {
		actual := calls[n].Sub(exits[n-1])
		d := float64(actual-supervision.Delay(policy, n)) / 1e6
		signed = append(signed, d)
		errs = append(errs, math.Abs(d))
	}
	computed := float64(supervision.Delay(policy, 1)) / 1e6
	logf("backoff over %d retries of %.0f ms: error p50 %.2f ms, p99 %.2f ms, max %.2f ms; actual − computed: min %.2f ms, max %.2f ms",
		len(errs), computed, percentile(errs, 50), percentile(errs, 99), percentile(errs, 100), percentile(signed, 0), percentile(signed, 100))
	return percentile(errs, 99), computed, nil
}

// percentile is the q-th percentile (0–100) of v, nearest rank.
func percentile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(math.Ceil(q/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// selfStatus reads fields (in kB) of /proc/self/status.
func selfStatus(keys ...string) map[string]int {
	out := map[string]int{}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, want := range keys {
			if k == want {
				f := strings.Fields(v)
				if len(f) > 0 {
					out[k], _ = strconv.Atoi(f[0])
				}
			}
		}
	}
	return out
}

// cpuTime is this process's user+system CPU time (its own threads, not
// the containers).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// goroutines is runtime.NumGoroutine, named for the soak's samples.
func goroutines() int { return runtime.NumGoroutine() }

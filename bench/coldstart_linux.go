package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/runtime/driver"
	"github.com/pantavisor/pv/runtime/testrootfs"
)

// coldN is the number of containers of the cold-start revision.
const coldN = 20

func init() {
	Register(Figure{
		Name:     "cold start: revision of 20 containers to all STARTED",
		Baseline: "runc run -d ×20, one after the other",
		Unit:     "ms",
		Goal:     0.5,
		Needs:    containerNeeds("pantavisor", "exec:runc"),
		Run: func() (float64, float64, error) {
			return coldStart(&runcRuns, func(f *fixture, root string) (time.Duration, error) {
				r, err := newRuncBench(f, root, coldN, sleeperArgs)
				if err != nil {
					return 0, err
				}
				return timeStarts(r.startAll, r.checkRunning, r.cleanup)
			})
		},
	})
	Register(Figure{
		Name:     "cold start: revision of 20 containers to all STARTED",
		Baseline: "lxc-start -d ×20, one after the other",
		Unit:     "ms",
		Goal:     1,
		Needs:    containerNeeds("pantavisor", "exec:lxc-start"),
		Run: func() (float64, float64, error) {
			return coldStart(&lxcRuns, func(f *fixture, root string) (time.Duration, error) {
				// upstreamLXC is what upstream Pantavisor hands LXC for
				// these containers.
				l, err := newLXCBench(f, root, coldN, sleeperArgs, upstreamLXC)
				if err != nil {
					return 0, err
				}
				return timeStarts(l.startAll, l.checkRunning, func() error { return l.cleanup(f.tag) })
			})
		},
	})
}

// Runs of each cold-start figure so far: they decide which side goes
// first.
var runcRuns, lxcRuns int

// settle is the pause between the two sides of a run: the kernel finishes
// tearing down the first side's containers (cgroups, namespaces, mounts,
// loop devices) in the background, and that work must not be timed as the
// second side's.
const settle = 300 * time.Millisecond

// alternate runs the sides of one run of a figure, with settle between
// them, first to last on even runs and last to first on odd ones (runs
// counts them), so that neither side is always timed on a machine still
// busy with the other's teardown. It stops at the first error.
func alternate(runs *int, sides ...func() error) error {
	if *runs%2 == 1 {
		slices.Reverse(sides)
	}
	*runs++
	for i, side := range sides {
		if i > 0 {
			time.Sleep(settle)
		}
		if err := side(); err != nil {
			return err
		}
	}
	return nil
}

// abba runs the two sides of one run of a figure in the order a b b a,
// or b a a b on every other run (runs counts them). Each side is then
// measured both early and late in the run, so that a change of the
// machine's pace during it, which on a shared VM moves a single side by a
// quarter within seconds, weighs on both alike, and neither always goes
// first. It stops at the first error.
func abba(runs *int, a, b func() error) error {
	*runs++
	if *runs%2 == 0 {
		a, b = b, a
	}
	for _, side := range []func() error{a, b, b, a} {
		if err := side(); err != nil {
			return err
		}
	}
	return nil
}

// abbaRates runs a and b, each doing a fixed amount of work and returning
// its rate, in the order of abba, and returns each side's rate over its
// two turns: the harmonic mean, its work over its time.
func abbaRates(runs *int, a, b func() (float64, error)) (ra, rb float64, err error) {
	var invA, invB float64 // the sum of 1/rate of each turn
	turn := func(f func() (float64, error), inv *float64) func() error {
		return func() error {
			rate, err := f()
			if err == nil {
				*inv += 1 / rate
			}
			return err
		}
	}
	if err := abba(runs, turn(a, &invA), turn(b, &invB)); err != nil {
		return 0, 0, err
	}
	return 2 / invA, 2 / invB, nil
}

// coldStart measures this project's cold start of the 20-container
// revision and the baseline's 20 starts on the same rootfs (mounted once),
// in one fixture. The side that goes first alternates from run to run, so
// that whatever the pause does not absorb is shared.
func coldStart(runs *int, baseline func(f *fixture, root string) (time.Duration, error)) (ours, base float64, err error) {
	t0 := time.Now()
	f, err := newFixture()
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, f.close()) }()
	logf("fixture built in %v", time.Since(t0).Round(time.Millisecond))
	root, err := f.mountedOnce()
	if err != nil {
		return 0, 0, err
	}
	var o, b time.Duration
	sides := []func() error{
		func() (err error) { o, err = coldStartOurs(f); return err },
		func() (err error) { b, err = baseline(f, root); return err },
	}
	if err := alternate(runs, sides...); err != nil {
		return 0, 0, err
	}
	return float64(o) / 1e6, float64(b) / 1e6, nil
}

// timeStarts times start, then checks and cleans up whatever happened.
func timeStarts(start, check, cleanup func() error) (_ time.Duration, err error) {
	defer func() {
		t0 := time.Now()
		err = errors.Join(err, cleanup())
		logf("baseline cleaned up in %v", time.Since(t0).Round(time.Millisecond))
	}()
	t0 := time.Now()
	if err := start(); err != nil {
		return 0, err
	}
	el := time.Since(t0)
	return el, check()
}

// coldStartOurs runs `pantavisor appengine` on a storage holding the
// 20-container revision and returns the time from starting the process to
// the first GET /containers that shows all 20 STARTED. It then stops the
// device and checks that it left nothing behind.
func coldStartOurs(f *fixture) (time.Duration, error) {
	d, el, err := startRevision(f, "cold", coldN)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	err = d.stopAndCheck()
	logf("device stopped in %v", time.Since(t0).Round(time.Millisecond))
	return el, err
}

// startRevision lays out a storage of n sleeping containers under
// f.dir/name and starts a device on it, waiting for all of them to be
// STARTED.
func startRevision(f *fixture, name string, n int) (*device, time.Duration, error) {
	storage := filepath.Join(f.dir, name, "storage")
	run := filepath.Join(f.dir, name, "run")
	var ctrs []benchCtr
	for i := range n {
		ctrs = append(ctrs, benchCtr{name: fmt.Sprintf("c%02d", i), cmd: sleeperCmd, lxc: upstreamLXC})
	}
	if err := buildStorage(storage, f.image, ctrs); err != nil {
		return nil, 0, err
	}
	if err := os.MkdirAll(run, 0o755); err != nil {
		return nil, 0, fmt.Errorf("run dir: %w", err)
	}
	d, err := startDevice(storage, run)
	if err != nil {
		return nil, 0, err
	}
	el, err := d.waitStarted(n, time.Minute)
	if err != nil {
		d.kill()
		return nil, 0, err
	}
	if err := waitTrapped(n, time.Minute); err != nil {
		d.kill()
		return nil, 0, err
	}
	return d, el, nil
}

// waitTrapped waits until n sleeper shells have installed their SIGTERM
// trap. STARTED means the init has been executed, not that it has run its
// first command yet; on two cores busy with twenty starts a shell can
// take a while, and one that gets SIGTERM before its trap ignores it (it
// is PID 1 of its namespace) and is killed only after pantavisor's stop
// timeout, seconds later. Only the sleepers run a shell as the init of a
// pid namespace below this one.
func waitTrapped(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		trapped := 0
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil || !strings.HasPrefix(string(b), "Name:\tsh\n") {
				continue
			}
			// Only the containers' inits: the shell forked to run the
			// background sleep has the same handlers until it executes.
			if st := string(b); containerInit(st) && caught(st, unix.SIGTERM) {
				trapped++
			}
		}
		if trapped >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d sleepers trap SIGTERM after %v", trapped, n, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// containerInit reports whether a /proc/<pid>/status text is that of the
// init of a nested pid namespace: its innermost pid is 1.
func containerInit(status string) bool {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(v)
			return len(f) > 1 && f[len(f)-1] == "1"
		}
	}
	return false
}

// caught reports whether a /proc/<pid>/status text shows sig in SigCgt.
func caught(status string, sig unix.Signal) bool {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:\t"); ok {
			mask, err := strconv.ParseUint(v, 16, 64)
			return err == nil && mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

// stopAndCheck stops the device and checks that it left no loop device,
// cgroup or process behind.
func (d *device) stopAndCheck() error {
	if err := d.stop(time.Minute); err != nil {
		return err
	}
	var errs []error
	// The mount namespace of the device, and with it the squashfs mounts,
	// go away with its last process; their loop devices are cleared just
	// after.
	objects, _ := filepath.Glob(filepath.Join(d.storage, "objects", "*"))
	deadline := time.Now().Add(5 * time.Second)
	for _, o := range objects {
		for len(testrootfs.LoopsBackedBy(o)) > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if l := testrootfs.LoopsBackedBy(o); len(l) > 0 {
			errs = append(errs, fmt.Errorf("loop devices left on %s: %v", o, l))
		}
	}
	if cg := cgroupDirs(driver.DeviceCgroupParent(d.storage)); len(cg) > 0 {
		errs = append(errs, fmt.Errorf("cgroups left: %v", cg))
	}
	if err := reapOrphans(5 * time.Second); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

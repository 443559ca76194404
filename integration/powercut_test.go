//go:build integration

package integration

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/freezetest"
	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/internal/revtest"
	"github.com/pantavisor/pv/runtime/reaper"
	"github.com/pantavisor/pv/storage"
)

// The power-cut case of the reliability suite (issues 12, 18): pantavisor SIGKILLed at
// random points of an update (its install, the transition, the reboot,
// the try, the commit); after each cut the storage passes Check, the next
// start runs either the old or the new revision, and the update ends
// either done (the new one runs) or failed with a message (the old one
// runs): never lost, never stuck.
//
// One storage serves every cut, as one device would live through them:
// the cuts then also land on accumulated state (a committed revision that
// is not the factory one, many trails, earlier failures), and a cut that
// leaves something behind shows in the next cycles too.

// powerCuts is the number of cuts: the 100 in the full profile.
const powerCuts, powerCutsShort = 100, 5

// envPowerCutSeed replays a run: the seed its log gave.
const envPowerCutSeed = "PV_POWERCUT_SEED"

// The moments a cut comes after.
const (
	cutInstall = "the install's start" // steps install, before the run
	cutRun     = "cmd run's start"     // LOCAL_RUN itself: pv_try, then INPROGRESS
	cutAfter   = "cmd run"             // the transition or reboot, the try, the commit
)

// cutPlan is where one cut lands.
type cutPlan struct {
	reboot bool          // the update changes the system container
	after  string        // cutInstall, cutRun or cutAfter
	delay  time.Duration // after that
}

func planCut(rng *rand.Rand) cutPlan {
	p := cutPlan{reboot: rng.IntN(2) == 0, after: cutAfter}
	ms := func(n int64) time.Duration { return time.Duration(rng.Int64N(n)) * time.Millisecond }
	switch r := rng.IntN(12); {
	case r < 2:
		// The install takes about a tenth of a second: land in it or
		// just after.
		p.after, p.delay = cutInstall, ms(200)
	case r < 4:
		p.after, p.delay = cutRun, ms(30)
	case r < 6 && !p.reboot:
		// The transition is over within a few tens of milliseconds.
		p.delay = ms(100)
	case p.reboot:
		// Stop, the pause, the new start, the try, the 1 s commit.
		p.delay = ms(4000)
	default:
		// The test, the 1 s commit delay, UPDATED.
		p.delay = ms(2500)
	}
	return p
}

// supervisor is the pid of the device's supervisor (the reaper's child
// marked with reaper.ChildEnv), 0 when there is none (the pause before a
// reboot's new start, or a start under way).
func supervisor(d *device) int {
	host := d.cmd.Process.Pid
	for _, init := range freezetest.Children(host) {
		for _, c := range freezetest.Children(init) {
			env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", c))
			if slices.Contains(strings.Split(string(env), "\x00"), reaper.ChildEnv+"=1") {
				return c
			}
		}
	}
	return 0
}

// cut SIGKILLs the host stage, which ends the device at once, as a power
// cut does: PID 1 dies with it (PR_SET_PDEATHSIG) and the pid namespace
// with PID 1. (The supervisor alone is no longer enough: PID 1 starts it
// again and it re-adopts the device, readopt_test.go.)
func (d *device) cut() {
	d.t.Helper()
	_ = syscall.Kill(d.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.t.Fatalf("the device survived the SIGKILL of its host stage (pid %d)", d.cmd.Process.Pid)
	}
}

// cutPhase names where a cut landed from what it left on disk.
func cutPhase(l storage.Layout, rev string, installing bool) string {
	p, err := l.ReadProgress(rev)
	switch {
	case err != nil && installing:
		return "install"
	case err != nil:
		return "no progress: " + err.Error()
	case p.Status == storage.StatusNew:
		return "installed, not run"
	}
	switch p.Msg {
	case storage.MsgTransition:
		return "transition"
	case storage.MsgReboot:
		return "reboot"
	case storage.MsgTry:
		return "try after reboot"
	}
	return string(p.Status)
}

// onlyTemporaries says a Check error lists only the temporary files a
// crash may leave (Recover removes them at the next start).
func onlyTemporaries(err error) bool {
	var inc *storage.InconsistentError
	if !errors.As(err, &inc) {
		return false
	}
	for _, p := range inc.Problems {
		if !strings.HasPrefix(p, "temporary file left: ") {
			return false
		}
	}
	return true
}

// runningRev says which of revs the device runs, by its current state.
func (d *device) runningRev(revs ...string) string {
	d.t.Helper()
	out, code := d.pvcontrol("steps", "get", "current")
	if code != 0 {
		d.t.Fatalf("steps get current: %d %s", code, out)
	}
	for _, rev := range revs {
		want, err := os.ReadFile(filepath.Join(storage.Layout{Root: d.storage}.Trail(rev), ".pvr", "json"))
		if err == nil && strings.TrimSpace(out) == strings.TrimSpace(string(want)) {
			return rev
		}
	}
	d.t.Fatalf("the device runs none of %v: %s", revs, out)
	return ""
}

func TestReliabilityPowerCut(t *testing.T) {
	isolated.Require(t)
	killCycles(t, "SIGKILL of the host stage (a power cut) at random instants of updates",
		runs(t, powerCuts, powerCutsShort), envPowerCutSeed, false)
}

// killCycles runs cuts update cycles on one storage, each with a SIGKILL
// at a random instant (planCut): of the host stage, which ends the device
// (a power cut; it is started again), or with supervisorOnly of the
// supervisor alone, which PID 1 starts again and which re-adopts the
// device (readopt_test.go). After each, the storage passes Check, the
// device runs the old or the new revision, and the update ends done (or
// UPDATED, when no reboot came to commit it) with the new one running, or
// failed with a message with the old one running: never lost, never
// stuck.
func killCycles(t *testing.T, name string, cuts int, seedEnv string, supervisorOnly bool) {
	var done, passed, checks int
	phases := map[string]int{}
	outcomes := map[string]int{}
	record(t, name, &done, &passed, func() string {
		var ok, failed, notRun int
		for k, n := range outcomes {
			switch {
			case k == "not run":
				notRun += n
			case strings.HasPrefix(k, string(storage.StatusDone)), strings.HasPrefix(k, string(storage.StatusUpdated)):
				ok += n
			default:
				failed += n
			}
		}
		return fmt.Sprintf("%d phases; %d DONE or UPDATED, %d failed with a message, %d not run; storage whole at %d checks", len(phases), ok, failed, notRun, checks)
	})
	rng := seeded(t, seedEnv)
	start := time.Now()

	dir := buildStorage(t, updateGroups(), updateCtrs("sys-0", echoer("b-0"), nil))
	l := storage.Layout{Root: dir}
	old, sysWord := "0", "sys-0"
	updated := "" // a revision left UPDATED by the last cycle
	for i := 1; i <= cuts; i++ {
		done = i
		plan := planCut(rng)
		name := fmt.Sprintf("pc%d", i)
		rev := "locals/" + name
		newSys := sysWord
		if plan.reboot {
			newSys = fmt.Sprintf("sys-%d", i)
		}
		next := buildStorage(t, updateGroups(), updateCtrs(newSys, echoer(fmt.Sprintf("b-%d", i)), nil))

		d := startDeviceEnv(t, dir, commitDelay)
		d.waitUp(fmt.Sprintf("cut %d: start", i), 60*time.Second)
		if updated != "" {
			// The previous update ended UPDATED: this boot tries it
			// again and commits it (or rolls it back) before another
			// update may run.
			d.waitFinal(updated, false, 60*time.Second)
			updated = ""
		}
		if plan.after != cutInstall {
			d.upload(next, name)
		}
		// The pvcontrol command the cut may interrupt: its error is the
		// cut's.
		done := make(chan struct{})
		go func() {
			defer close(done)
			switch plan.after {
			case cutInstall:
				tgz := filepath.Join(t.TempDir(), "rev.tgz")
				if revtest.Export(next, tgz) == nil {
					_ = exec.Command(filepath.Join(bin, "pvcontrol"), "-s", d.sock(), "steps", "install", tgz, rev).Run()
				}
			case cutRun:
				_ = exec.Command(filepath.Join(bin, "pvcontrol"), "-s", d.sock(), "cmd", "run", rev).Run()
			}
		}()
		if plan.after == cutAfter {
			if out, code := d.pvcontrol("cmd", "run", rev); code != 0 {
				t.Fatalf("cut %d: cmd run: %d %s", i, code, out)
			}
		}
		time.Sleep(plan.delay)
		what := "host stage"
		if supervisorOnly {
			what = d.killSupervisor()
		} else {
			d.cut()
		}
		<-done
		phase := cutPhase(l, rev, plan.after == cutInstall)
		phases[phase]++
		t.Logf("cut %d: reboot update %v, %v after %s: %s killed in %s", i, plan.reboot,
			plan.delay.Round(time.Millisecond), plan.after, what, phase)
		if err := l.Check(); onlyTemporaries(err) {
			t.Logf("cut %d: left for Recover: %v", i, err)
		} else if err != nil {
			t.Fatalf("cut %d (%s): storage after the cut: %v", i, phase, err)
		}
		checks++

		// After a power cut, a cut during the try or after UPDATED tries
		// the revision again and commits it; a cut that the bootloader
		// takes for a failed try rolls back: DONE or a failure, not
		// UPDATED. After a supervisor kill, UPDATED stays (no reboot
		// commits it). An update not yet run (no progress, or NEW) stays
		// so.
		if !supervisorOnly {
			d = startDeviceEnv(t, dir, commitDelay)
		}
		p, ran := d.waitFinal(rev, supervisorOnly, 60*time.Second)
		d.waitUp(fmt.Sprintf("cut %d: restart", i), 60*time.Second)
		running := d.runningRev(old, rev)
		env := bootEnv(t, dir)
		outcome := "not run"
		switch {
		case !ran:
			if plan.after == cutAfter {
				t.Fatalf("cut %d (%s): %s lost: %+v", i, phase, rev, p)
			}
			// pv_try may name the running revision: a non-reboot
			// update that ended UPDATED keeps it, as upstream.
			if running != old || (env.Try() != "" && env.Try() != old) {
				t.Fatalf("cut %d (%s): %s never run but running %s, bootloader %v", i, phase, rev, running, env)
			}
		case p.Status == storage.StatusDone:
			if running != rev || env.Committed() != rev || env.Try() != "" {
				t.Fatalf("cut %d (%s): %s DONE but running %s, bootloader %v", i, phase, rev, running, env)
			}
		case p.Status == storage.StatusUpdated:
			// Upstream's UPDATED keeps pv_try: the next boot commits.
			if running != rev || (env.Try() != rev && env.Try() != "") {
				t.Fatalf("cut %d (%s): %s UPDATED but running %s, bootloader %v", i, phase, rev, running, env)
			}
		case p.Msg == "":
			t.Fatalf("cut %d (%s): %s failed with no message: %+v", i, phase, rev, p)
		case running != old || (env.Try() != "" && env.Try() != old):
			t.Fatalf("cut %d (%s): %s failed (%s) but running %s, bootloader %v", i, phase, rev, p.Msg, running, env)
		}
		if ran {
			outcome = string(p.Status) + " " + p.Msg
			if p.Status == storage.StatusUpdated {
				updated = rev
			}
		}
		outcomes[outcome]++
		t.Logf("cut %d: after the restart: %s, running %s", i, outcome, running)
		if code := d.stop(30 * time.Second); code != 0 {
			t.Fatalf("cut %d: stop: exit code %d", i, code)
		}
		if err := l.Check(); err != nil {
			t.Fatalf("cut %d (%s): storage after a clean stop: %v", i, phase, err)
		}
		checks++
		if running == rev {
			old, sysWord = rev, newSys
		}
		passed++
	}
	t.Logf("%d cuts in %v", cuts, time.Since(start).Round(time.Second))
	t.Logf("cuts by phase: %s", countList(phases))
	t.Logf("outcomes: %s", countList(outcomes))
}

// killSupervisor SIGKILLs the supervisor, when there is one (a reboot of
// an appengine device has none for a moment: then nothing is killed),
// and waits for PID 1 to start the next. It says what it killed.
func (d *device) killSupervisor() string {
	d.t.Helper()
	sup := supervisor(d)
	if sup == 0 {
		return "nothing (between boots)"
	}
	_ = syscall.Kill(sup, syscall.SIGKILL)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if n := supervisor(d); n != 0 && n != sup {
			return "supervisor"
		}
		select {
		case <-d.exited:
			d.t.Fatalf("the device ended with its supervisor:\n%s", d.output())
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatal("no new supervisor 20 s after the kill")
		}
	}
}

// waitFinal waits, after a restart, for the end of rev's update: DONE,
// ERROR or WONTGO (UPDATED is tried again and committed; with updated,
// after a re-adoption, it is an end too), and returns its progress, ran
// true. An update that was never run (no progress, or NEW, and no try of
// it in the bootloader) returns at once with ran false.
func (d *device) waitFinal(rev string, updated bool, timeout time.Duration) (p storage.Progress, ran bool) {
	d.t.Helper()
	if p, err := (storage.Layout{Root: d.storage}).ReadProgress(rev); err != nil || p.Status == storage.StatusNew {
		// Unless the bootloader holds its try: a supervisor killed
		// between the two began the reboot into it, which the next one
		// carries out.
		if !updated || bootEnv(d.t, d.storage).Try() != rev {
			return p, false
		}
	}
	p, _ = d.waitProgressFor(rev, "DONE nor failed", timeout, func(s storage.Status) bool {
		return s == storage.StatusDone || s.Failed() || updated && s == storage.StatusUpdated
	})
	return p, true
}

func countList(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%q: %d; ", k, m[k])
	}
	return b.String()
}

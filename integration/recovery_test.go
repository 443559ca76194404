//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/freezetest"
	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
)

// logTimes returns the times of the log lines that contain all parts.
func logTimes(t *testing.T, log string, parts ...string) []time.Time {
	t.Helper()
	var out []time.Time
	for _, l := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if !all {
			continue
		}
		f := strings.Fields(l)
		if len(f) == 0 || !strings.HasPrefix(f[0], "time=") {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time="))
		if err != nil {
			t.Fatalf("log time: %v", err)
		}
		out = append(out, ts)
	}
	return out
}

func withinPct(got, want time.Duration, pct float64) bool {
	d := float64(got - want)
	return d <= float64(want)*pct && d >= -float64(want)*pct
}

// on-failure, max_retries 3, retry_delay 1, factor 2: a container exiting 1
// is restarted exactly 3 times, ~1 s, 2 s, 4 s apart, then FAILED; the rest
// of the revision keeps running.
func TestOnFailureBackoffThenFailed(t *testing.T) {
	isolated.Require(t)
	storage := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "crash", group: "app", cmd: `/bin/sh "-c" "echo run; exit 1"`, run: map[string]any{
			"auto_recovery": map[string]any{"policy": "on-failure", "max_retries": 3, "retry_delay": 1, "backoff_factor": 2}}},
		{name: "steady", group: "app", cmd: sleeper},
	})
	d := startDevice(t, storage)
	m := d.waitContainers("crash FAILED", 30*time.Second, statusIs(messages.StatusFailed, "crash"))
	if m["steady"].Status != messages.StatusStarted {
		t.Errorf("steady: %s", m["steady"].Status)
	}
	if m["crash"].AutoRecovery.CurrentRetries != 3 || m["crash"].LastExit == nil || m["crash"].LastExit.Code != 1 {
		t.Errorf("crash: %+v", m["crash"])
	}
	log := d.log()
	// From the exit to the next start's beginning: how long a start then
	// takes (over a second on a loaded machine) is not the backoff's.
	starts := logTimes(t, log, "starting container", "container=crash")
	exits := logTimes(t, log, "container exited", "container=crash")
	if len(starts) != 4 || len(exits) != 4 {
		t.Fatalf("%d starts and %d exits, want 4 each", len(starts), len(exits))
	}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		got := starts[i+1].Sub(exits[i])
		if !withinPct(got, want, 0.15) {
			t.Errorf("retry %d came %v after the exit, want %v ±15%%", i+1, got, want)
		}
	}
	if n := strings.Count(d.console("crash"), "run"); n != 4 {
		t.Errorf("console shows %d runs", n)
	}
}

// on-failure does not restart a clean exit; always does; a death by signal
// counts as a failure.
func TestPoliciesAndSignals(t *testing.T) {
	isolated.Require(t)
	storage := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "clean", group: "app", cmd: `/bin/sh "-c" "echo run; exit 0"`, run: map[string]any{
			"auto_recovery": map[string]any{"policy": "on-failure"}}},
		{name: "again", group: "app", cmd: `/bin/sh "-c" "echo run; sleep 0.2; exit 0"`, run: map[string]any{
			"auto_recovery": map[string]any{"policy": "always", "max_retries": 2}}},
		{name: "killed", group: "app", cmd: `/bin/sh "-c" "echo run; ` + idle + `"`, run: map[string]any{
			"auto_recovery": map[string]any{"policy": "on-failure", "max_retries": 1}}},
	})
	d := startDevice(t, storage)
	m := d.waitContainers("killed started", 20*time.Second, statusIs(messages.StatusStarted, "killed"))
	pid1 := nsInit(t, d)
	if err := syscall.Kill(hostPid(t, pid1, m["killed"].Pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.waitContainers("killed restarted", 20*time.Second, func(m map[string]messages.ContainerInfo) bool {
		return m["killed"].Status == messages.StatusStarted && m["killed"].AutoRecovery.CurrentRetries == 1
	})
	m = d.waitContainers("again done", 20*time.Second, statusIs(messages.StatusStopped, "again", "clean"))
	if n := strings.Count(d.console("again"), "run"); n != 3 {
		t.Errorf("always: %d runs, want 1 + 2 retries", n)
	}
	if n := strings.Count(d.console("clean"), "run"); n != 1 {
		t.Errorf("on-failure restarted a clean exit: %d runs", n)
	}
	if e := m["killed"].LastExit; e == nil || e.Signal != 9 {
		t.Errorf("killed: last exit %+v", e)
	}
}

// unless-stopped: an API stop is not undone by recovery; an API start arms
// it again.
func TestUnlessStoppedWithAPI(t *testing.T) {
	isolated.Require(t)
	storage := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "svc", group: "app", cmd: sleeper, run: map[string]any{
			"auto_recovery": map[string]any{"policy": "unless-stopped"}}},
	})
	d := startDevice(t, storage)
	d.waitContainers("svc started", 20*time.Second, statusIs(messages.StatusStarted, "svc"))
	d.waitConsole("svc", "up", 10*time.Second)
	if out, code := d.pvcontrol("containers", "stop", "svc"); code != 0 {
		t.Fatalf("stop: %d %s", code, out)
	}
	d.waitContainers("svc stopped", 20*time.Second, statusIs(messages.StatusStopped, "svc"))
	time.Sleep(1500 * time.Millisecond)
	if m := d.waitContainers("still stopped", time.Second, statusIs(messages.StatusStopped, "svc")); m["svc"].AutoRecovery.CurrentRetries != 0 {
		t.Errorf("recovery ran after an API stop: %+v", m["svc"].AutoRecovery)
	}
	if out, code := d.pvcontrol("containers", "start", "svc"); code != 0 {
		t.Fatalf("start: %d %s", code, out)
	}
	m := d.waitContainers("svc started again", 20*time.Second, statusIs(messages.StatusStarted, "svc"))
	pid1 := nsInit(t, d)
	if err := syscall.Kill(hostPid(t, pid1, m["svc"].Pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.waitContainers("svc recovered", 20*time.Second, func(m map[string]messages.ContainerInfo) bool {
		return m["svc"].Status == messages.StatusStarted && m["svc"].AutoRecovery.CurrentRetries == 1
	})
}

// reset_window: a run longer than the window starts again from retry 1.
func TestResetWindow(t *testing.T) {
	isolated.Require(t)
	storage := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "slow", group: "app", cmd: `/bin/sh "-c" "echo run; sleep 1.5; exit 3"`, run: map[string]any{
			"auto_recovery": map[string]any{"policy": "on-failure", "max_retries": 1, "reset_window": 1}}},
	})
	d := startDevice(t, storage)
	// Every run lasts longer than the window, so the single allowed retry
	// is granted again and again.
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(d.console("slow"), "run") < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d runs: the counter was not reset", strings.Count(d.console("slow"), "run"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if m := d.containers(); m[0].Status == messages.StatusFailed {
		t.Errorf("gave up despite the reset window: %+v", m[0])
	}
}

// The cap: factor 10 with retry_delay 1 never waits more than
// PV_AUTO_RECOVERY_MAX_DELAY (2 s here, from the config file).
func TestBackoffCap(t *testing.T) {
	isolated.Require(t)
	storage := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "crash", group: "app", cmd: `/bin/sh "-c" "exit 1"`, run: map[string]any{
			"auto_recovery": map[string]any{"policy": "on-failure", "max_retries": 4, "retry_delay": 1, "backoff_factor": 10}}},
	})
	conf := filepath.Join(t.TempDir(), "pantavisor.config")
	if err := os.WriteFile(conf, []byte("PV_AUTO_RECOVERY_MAX_DELAY=2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDeviceArgs(t, storage, "--config", conf)
	d.waitContainers("crash FAILED", 30*time.Second, statusIs(messages.StatusFailed, "crash"))
	log := d.log()
	// From the exit to the next start's beginning: how long a start then
	// takes (over a second on a loaded machine) is not the backoff's.
	starts := logTimes(t, log, "starting container", "container=crash")
	exits := logTimes(t, log, "container exited", "container=crash")
	if len(starts) != 5 {
		t.Fatalf("%d starts, want 5", len(starts))
	}
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(exits[i-1]); gap > 2300*time.Millisecond {
			t.Errorf("retry %d waited %v, above the 2 s cap", i, gap)
		}
	}
	if gap := starts[2].Sub(exits[1]); gap < 1800*time.Millisecond {
		t.Errorf("retry 2 waited %v: the cap, not 10 s nor 1 s, was expected", gap)
	}
}

// Legacy fallback (restart_policy container, no auto_recovery): restarts
// with the floor backoff instead of spinning: a container that exits at
// once costs pantavisor < 5 % of a CPU over 30 s.
func TestLegacyFallbackDoesNotSpin(t *testing.T) {
	isolated.Require(t)
	if testing.Short() {
		t.Skip("30 s CPU measurement")
	}
	storage := buildStorage(t, []map[string]any{{"name": "app", "restart_policy": "container"}}, []ctr{
		{name: "loop", group: "app", cmd: `/bin/sh "-c" "echo run; exit 1"`},
	})
	d := startDevice(t, storage)
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(d.console("loop"), "run") < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	pids := deviceProcesses(t, d)
	before, wall := cpuTicks(pids), time.Now()
	time.Sleep(30 * time.Second)
	used := float64(cpuTicks(pids)-before) / 100 // USER_HZ
	pct := 100 * used / time.Since(wall).Seconds()
	runs := strings.Count(d.console("loop"), "run")
	t.Logf("pantavisor CPU over 30 s: %.2f %% (%d runs so far)", pct, runs)
	if pct >= 5 {
		t.Errorf("pantavisor used %.1f %% CPU for a crash-looping container", pct)
	}
	if runs < 5 {
		t.Errorf("only %d runs: the legacy fallback does not restart", runs)
	}
}

// A system container that gives up outside an update reboots the device:
// in appengine mode a full teardown and a new start, after which it runs.
func TestSystemContainerFailureReboots(t *testing.T) {
	isolated.Require(t)
	storage := buildStorage(t, []map[string]any{{"name": "core", "restart_policy": "system"}}, []ctr{
		// Fails on the first boot only: a marker on permanent storage.
		{name: "sys", group: "core",
			cmd: `/bin/sh "-c" "if [ -f /data/booted ]; then echo second-boot; ` + idle + `; fi; touch /data/booted; echo first-boot; exit 1"`,
			lxc: []string{"lxc.mount.entry = /volumes/sys/docker--data data none bind,rw,create=dir 0 0"},
			run: map[string]any{"auto_recovery": map[string]any{"policy": "no"}, "storage": map[string]any{
				"lxc-overlay": map[string]any{"persistence": "boot"}, "docker--data": map[string]any{"persistence": "permanent"}}}},
	})
	if err := os.MkdirAll(filepath.Join(storage, "disks", "perm", "sys", "docker--data"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Past the factory revision, which would enter safe mode instead.
	commitAs(t, storage, "1")
	d := startDevice(t, storage)
	d.waitConsole("sys", "second-boot", 30*time.Second)
	d.waitContainers("sys up after the reboot", 20*time.Second, statusIs(messages.StatusStarted, "sys"))
	if n := strings.Count(d.log(), "pantavisor starting"); n != 2 {
		t.Errorf("%d boots, want 2", n)
	}
	if !strings.Contains(d.output(), "reboot requested") {
		t.Errorf("no reboot in the output:\n%s", d.output())
	}
}

// deviceProcesses lists the pids of pantavisor's own processes (host stage,
// PID 1 reaper, supervisor), not the containers'.
func deviceProcesses(t *testing.T, d *device) []int {
	pids := []int{d.cmd.Process.Pid}
	pid1 := nsInit(t, d)
	pids = append(pids, pid1)
	return append(pids, freezetest.Children(pid1)...)
}

// cpuTicks sums utime+stime of pids (and their threads) in clock ticks.
func cpuTicks(pids []int) int64 {
	var total int64
	for _, p := range pids {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += u + st
	}
	return total
}

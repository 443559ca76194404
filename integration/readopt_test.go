//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/runtime/reaper"
)

// readoptDevice is a device of 20 containers: three on IPAM pools
// (poolsDeviceWith), "seven" on pool lan, which exits with code 7 on
// SIGUSR1 and is restarted by its policy, and 16 that sleep.
func readoptDevice(t *testing.T) (*device, []string) {
	t.Helper()
	always := map[string]any{"policy": "always", "retry_delay": 0}
	extra := []ctr{{name: "seven", group: "app",
		cmd: `/bin/sh "-c" "trap 'exit 7' USR1; while true; do sleep 0.05; done"`,
		run: map[string]any{"network": map[string]any{"pool": "lan"}, "auto_recovery": always}}}
	for i := range 16 {
		extra = append(extra, ctr{name: fmt.Sprintf("s%02d", i), group: "app",
			cmd: `/bin/sh "-c" "trap 'exit 0' TERM; while true; do sleep 1; done"`})
	}
	d := startDevice(t, poolsDeviceWith(t, lanClient, extra...))
	names := []string{"srv", "cli", "other"}
	for _, c := range extra {
		names = append(names, c.name)
	}
	d.waitContainers("all STARTED", 2*time.Minute, statusIs(messages.StatusStarted, names...))
	return d, names
}

// ctrlClient is a control-socket client without process start-up, for
// timing: a new connection per request, as a restarted socket needs.
func ctrlClient(sock string) *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
}

func getContainers(c *http.Client) (map[string]messages.ContainerInfo, error) {
	res, err := c.Get("http://localhost/containers")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /containers: %s", res.Status)
	}
	var cs []messages.ContainerInfo
	if err := json.NewDecoder(res.Body).Decode(&cs); err != nil {
		return nil, err
	}
	m := map[string]messages.ContainerInfo{}
	for _, c := range cs {
		m[c.Name] = c
	}
	return m, nil
}

// statField is field n (1-based, after the command) of /proc/<pid>/stat,
// "" when the process is gone.
func statField(pid, n int) string {
	return statFileField(fmt.Sprintf("/proc/%d/stat", pid), n)
}

// statFileField is field n of a stat file of /proc (a process's or a
// thread's), "" when it cannot be read.
func statFileField(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < n {
		return ""
	}
	return f[n-1]
}

// waitStopped waits up to d until every thread of pid is stopped (state
// T in /proc/<pid>/task/*/stat) and reports whether they are.
func waitStopped(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(time.Millisecond) {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		stopped := err == nil && len(tasks) > 0
		for _, task := range tasks {
			if statFileField(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()), 1) != "T" {
				stopped = false
				break
			}
		}
		if stopped || time.Now().After(deadline) {
			return stopped
		}
	}
}

// catches tells whether pid has a handler for sig (SigCgt of
// /proc/<pid>/status).
func catches(pid int, sig syscall.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

// startTime is the process's start time (field 22 of stat): a process
// that kept it is the same process.
func startTime(pid int) string { return statField(pid, 20) }

// readopted waits until the control socket answers with every container
// of keep STARTED under the pid it had, and returns how long that took
// from since.
func readopted(t *testing.T, c *http.Client, before map[string]messages.ContainerInfo, keep []string, since time.Time) (time.Duration, map[string]messages.ContainerInfo) {
	t.Helper()
	deadline := since.Add(30 * time.Second)
	var last map[string]messages.ContainerInfo
	var lastErr error
	for time.Now().Before(deadline) {
		m, err := getContainers(c)
		if err == nil {
			ok := true
			for _, n := range keep {
				if m[n].Status != messages.StatusStarted || m[n].Pid != before[n].Pid {
					ok = false
					break
				}
			}
			if ok {
				return time.Since(since), m
			}
			last = m
		}
		lastErr = err
		time.Sleep(2 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "", " ")
	t.Fatalf("not re-adopted after 30 s (last error %v):\n%s", lastErr, b)
	return 0, nil
}

// The supervisor alone is killed with SIGKILL while 20 containers run: PID
// 1 starts it again, and the new one re-adopts every container (same pid,
// same process, same address, uptime going on) with the control socket
// back, and nothing restarted; a container whose init exited (code 7) in
// the gap is reported with that code and restarted by its policy. A
// SIGHUP re-executes the supervisor the same way. Killed three times in a
// minute, the supervisor makes PID 1 reboot the device instead.
func TestReliabilitySupervisorKill(t *testing.T) {
	isolated.Require(t)
	kills := runs(t, 10, 1)
	var done, passed int
	var times []time.Duration
	record(t, "SIGKILL of the supervisor alone (20 containers)", &done, &passed, func() string {
		if len(times) == 0 {
			return ""
		}
		slices.Sort(times)
		return fmt.Sprintf("re-adopted in median %s (max %s) over %d kills, 0 restarts", ms(times[len(times)/2]), ms(times[len(times)-1]), len(times))
	})
	d, names := readoptDevice(t)
	c := ctrlClient(d.sock())
	before, err := getContainers(c)
	if err != nil {
		t.Fatal(err)
	}
	keep := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "seven" })
	starts := map[string]string{}
	for _, n := range names {
		starts[n] = startTime(hostPid(t, d.cmd.Process.Pid, before[n].Pid))
	}

	// 1. An exit in the gap: the supervisor is stopped, "seven" exits 7
	// (a zombie of the stopped supervisor), then the supervisor dies and
	// PID 1 reaps it.
	done++
	sup := supervisor(d)
	seven := hostPid(t, d.cmd.Process.Pid, before["seven"].Pid)
	if sup == 0 || seven == 0 {
		t.Fatalf("supervisor %d, seven %d: not found", sup, seven)
	}
	// The shell is its pid namespace's init: the kernel drops a signal
	// it has no handler for, so SIGUSR1 before its trap is set is lost.
	for deadline := time.Now().Add(10 * time.Second); !catches(seven, syscall.SIGUSR1); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("seven (pid %d) never set its SIGUSR1 trap", seven)
		}
	}
	syscall.Kill(sup, syscall.SIGSTOP)
	// Should the test fail from here, the supervisor must not stay
	// frozen: the device's stop would wait for it in vain.
	defer syscall.Kill(sup, syscall.SIGCONT)
	// SIGSTOP stops a process's threads one by one; until the last one
	// is stopped the supervisor can still reap seven's exit. (CI saw
	// seven gone, not a zombie, once.)
	if !waitStopped(sup, 5*time.Second) {
		t.Fatalf("supervisor %d not stopped 5 s after SIGSTOP", sup)
	}
	syscall.Kill(seven, syscall.SIGUSR1)
	for deadline := time.Now().Add(5 * time.Second); statField(seven, 1) != "Z" && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if st := statField(seven, 1); st != "Z" {
		t.Fatalf("seven did not exit while the supervisor was stopped (state %q)", st)
	}
	at := time.Now()
	syscall.Kill(sup, syscall.SIGKILL)
	took, after := readopted(t, c, before, keep, at)
	times = append(times, took)
	checkKept(t, d, before, after, keep, starts)
	m := d.waitContainers("seven restarted after its exit 7", 30*time.Second, func(m map[string]messages.ContainerInfo) bool {
		s := m["seven"]
		return s.Status == messages.StatusStarted && s.LastExit != nil && s.Pid != before["seven"].Pid
	})
	starts["seven"] = startTime(hostPid(t, d.cmd.Process.Pid, m["seven"].Pid))
	if ex := m["seven"].LastExit; ex.Code != 7 {
		t.Errorf("seven's last exit is %+v, want code 7", ex)
	}
	if m["seven"].IPv4Address == "" || m["seven"].IPv4Address == after["srv"].IPv4Address || m["seven"].IPv4Address == after["cli"].IPv4Address {
		t.Errorf("seven restarted with address %q (srv %s, cli %s)", m["seven"].IPv4Address, after["srv"].IPv4Address, after["cli"].IPv4Address)
	}
	if out, code := d.pvcontrol("ls"); code != 0 {
		t.Errorf("pvcontrol ls after re-adoption: exit %d: %s", code, out)
	}
	if !t.Failed() {
		passed++
	}

	// 2. More kills, spaced so that no minute holds three: not a crash
	// loop (full profile only: each costs half a minute).
	before = m
	for i := 1; i < kills && !t.Failed(); i++ {
		done++
		time.Sleep(reaper.CrashWindow/2 + time.Second)
		sup := supervisor(d)
		if sup == 0 {
			t.Fatal("no supervisor")
		}
		at := time.Now()
		syscall.Kill(sup, syscall.SIGKILL)
		took, after := readopted(t, c, before, names, at)
		times = append(times, took)
		checkKept(t, d, before, after, names, starts)
		if !t.Failed() {
			passed++
		}
	}

	// 3. SIGHUP, then pvcontrol cmd reexec: the supervisor re-executes
	// from its file (an in-place upgrade), which is no crash.
	for _, how := range []string{"SIGHUP", "pvcontrol cmd reexec"} {
		done++
		old := supervisor(d)
		if old == 0 {
			t.Fatal("no supervisor")
		}
		at := time.Now()
		if how == "SIGHUP" {
			syscall.Kill(old, syscall.SIGHUP)
		} else if out, code := d.pvcontrol("cmd", "reexec", "upgrade"); code != 0 {
			t.Fatalf("pvcontrol cmd reexec: exit %d: %s", code, out)
		}
		for deadline := time.Now().Add(10 * time.Second); supervisor(d) == old && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		took, after := readopted(t, c, before, names, at)
		t.Logf("re-executed (%s) and re-adopted in %s", how, ms(took))
		if sup := supervisor(d); sup == old || sup == 0 {
			t.Errorf("supervisor after %s: %d (was %d)", how, sup, old)
		}
		checkKept(t, d, before, after, names, starts)
		if !strings.Contains(d.output(), "starting the supervisor again from its file") {
			t.Errorf("PID 1 did not say it re-executed the supervisor:\n%s", d.output())
		}
		if !t.Failed() {
			passed++
		}
	}

	// 4. Three crashes within a minute (the kills above count): PID 1
	// gives up and the device reboots, which in appengine mode is a new
	// boot by the host stage.
	done++
	for i := 0; i < reaper.CrashLimit && !strings.Contains(d.output(), "keeps failing"); i++ {
		sup := supervisor(d)
		if sup == 0 {
			t.Fatal("no supervisor")
		}
		syscall.Kill(sup, syscall.SIGKILL)
		// The next kill is for the next supervisor, if there is one.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			if n := supervisor(d); (n != 0 && n != sup) || strings.Contains(d.output(), "keeps failing") {
				break
			}
		}
	}
	d.waitOutput("the supervisor keeps failing", 30*time.Second)
	d.waitOutput("reboot requested: starting again", 30*time.Second)
	// The socket is a new one, once the new boot made it.
	var rebooted map[string]messages.ContainerInfo
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		m, err := getContainers(c)
		if err == nil && !slices.ContainsFunc(names, func(n string) bool { return m[n].Status != messages.StatusStarted }) {
			rebooted = m
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all STARTED 2 min after the reboot (%v): %v", err, m)
		}
	}
	for _, n := range names {
		if p := hostPid(t, d.cmd.Process.Pid, rebooted[n].Pid); p != 0 && startTime(p) == starts[n] {
			t.Errorf("%s survived the reboot (same process)", n)
		}
	}
	if !t.Failed() {
		passed++
	}
}

// checkKept checks that every container of keep is the same process as
// before, with its address and its uptime going on.
func checkKept(t *testing.T, d *device, before, after map[string]messages.ContainerInfo, keep []string, starts map[string]string) {
	t.Helper()
	for _, n := range keep {
		b, a := before[n], after[n]
		if p := hostPid(t, d.cmd.Process.Pid, a.Pid); p == 0 || startTime(p) != starts[n] {
			t.Errorf("%s: not the same process after re-adoption (pid %d)", n, a.Pid)
		}
		if a.IPv4Address != b.IPv4Address {
			t.Errorf("%s: address %q, was %q", n, a.IPv4Address, b.IPv4Address)
		}
		if a.UptimeSecs < b.UptimeSecs {
			t.Errorf("%s: uptime %d s, was %d s", n, a.UptimeSecs, b.UptimeSecs)
		}
		// The recovery bookkeeping goes on too.
		if a.AutoRecovery.CurrentRetries != b.AutoRecovery.CurrentRetries || (a.LastExit == nil) != (b.LastExit == nil) ||
			a.LastExit != nil && a.LastExit.Code != b.LastExit.Code {
			t.Errorf("%s: retries %d and last exit %+v, were %d and %+v", n, a.AutoRecovery.CurrentRetries, a.LastExit,
				b.AutoRecovery.CurrentRetries, b.LastExit)
		}
	}
}

// supervisorKills is the number of update cycles with a supervisor kill.
const supervisorKills, supervisorKillsShort = 40, 3

// envSupervisorKillSeed replays a run: the seed its log gave.
const envSupervisorKillSeed = "PV_SUPERVISOR_KILL_SEED"

// The supervisor alone SIGKILLed at random instants of updates (their
// install, the transition, the reboot, the try, the commit): the update
// still ends, done or failed with a message, on a storage that stays
// whole, with the revision that runs matching its end.
func TestReliabilitySupervisorKillDuringUpdates(t *testing.T) {
	isolated.Require(t)
	killCycles(t, "SIGKILL of the supervisor alone at random instants of updates",
		runs(t, supervisorKills, supervisorKillsShort), envSupervisorKillSeed, true)
}

// A supervisor killed while it boots, before it listens (before it sent
// PID 1 the control socket), is neither started again to re-adopt a boot
// it left half done nor a start-up failure to report: the device reboots,
// as a device whose supervisor ended unexpectedly does, and comes up. (The
// full reliability profile found the appengine device ending there.)
func TestSupervisorKilledWhileStarting(t *testing.T) {
	isolated.Require(t)
	storage := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{{name: "a", group: "app", cmd: sleeper}})
	for attempt := 1; ; attempt++ {
		d := launchDevice(t, storage, nil)
		var sup int
		for deadline := time.Now().Add(20 * time.Second); sup == 0; time.Sleep(time.Millisecond) {
			if sup = supervisor(d); sup == 0 && time.Now().After(deadline) {
				t.Fatalf("no supervisor 20 s after the start:\n%s", d.output())
			}
		}
		// Frozen, it cannot become up between the check and the kill;
		// a thread that still ran after the signal could have, so the
		// check waits until every one of them is stopped.
		_ = syscall.Kill(sup, syscall.SIGSTOP)
		if !waitStopped(sup, 5*time.Second) {
			_ = syscall.Kill(sup, syscall.SIGCONT)
			t.Fatalf("supervisor %d not stopped 5 s after SIGSTOP", sup)
		}
		if _, err := os.Stat(d.sock()); err == nil {
			if attempt == 5 {
				t.Fatal("the supervisor listened before it could be stopped, 5 times")
			}
			_ = syscall.Kill(sup, syscall.SIGCONT)
			d.stop(30 * time.Second)
			continue
		}
		_ = syscall.Kill(sup, syscall.SIGKILL)
		if exited := d.waitSocket(30 * time.Second); exited {
			t.Fatalf("the device ended with its supervisor: %v\n%s", d.exitErr, d.output())
		}
		if out := d.output(); !strings.Contains(out, "while it started: rebooting") {
			t.Errorf("no reboot said:\n%s", out)
		}
		if n := supervisor(d); n == sup {
			t.Fatalf("supervisor %d still there after its SIGKILL", sup)
		}
		d.waitContainers("a started after the reboot", 30*time.Second, statusIs(messages.StatusStarted, "a"))
		if code := d.stop(30 * time.Second); code != 0 {
			t.Errorf("stop after the reboot: exit code %d\n%s", code, d.output())
		}
		return
	}
}

// A supervisor killed as it stopped, after it had removed the control
// socket's file: PID 1 starts the next one, which took over the listener
// PID 1 kept, found no file for it, and exited ("refuse socket …: no
// such file or directory"), ending the device. It makes a new socket now.
// (The full reliability profile's random kills found it: a kill 15 ms
// after a reboot update's run, in the supervisor's last moments.)
func TestSupervisorKilledAfterItRemovedTheSocket(t *testing.T) {
	isolated.Require(t)
	storage := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{{name: "a", group: "app", cmd: sleeper}})
	d := launchDevice(t, storage, nil)
	if exited := d.waitSocket(30 * time.Second); exited {
		t.Fatalf("the device ended: %v\n%s", d.exitErr, d.output())
	}
	d.waitContainers("a started", 30*time.Second, statusIs(messages.StatusStarted, "a"))
	sup := supervisor(d)
	if sup == 0 {
		t.Fatal("no supervisor")
	}
	// What a stopping supervisor does last, then its death.
	_ = syscall.Kill(sup, syscall.SIGSTOP)
	if err := os.Remove(d.sock()); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(sup, syscall.SIGKILL)
	if exited := d.waitSocket(30 * time.Second); exited {
		t.Fatalf("the device ended with its supervisor: %v\n%s", d.exitErr, d.output())
	}
	d.waitContainers("a answered for by the next supervisor", 30*time.Second, statusIs(messages.StatusStarted, "a"))
	if code := d.stop(30 * time.Second); code != 0 {
		t.Errorf("stop: exit code %d\n%s", code, d.output())
	}
}

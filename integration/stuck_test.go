//go:build integration

package integration

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/freezetest"
	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/storage"
)

// A container process in uninterruptible sleep (a hung FUSE server, a
// stuck NFS mount, a dying disk) does not die of SIGKILL until the kernel
// lets it go. These tests make one with the cgroup v1 freezer
// (freezetest): a child of the container's init frozen in a cgroup nested
// in the container's, which the init, its pid namespace's reaper, cannot
// end before.

// freezeChild freezes a child of the container init whose host pid is
// init (freezetest): SIGKILL does not end it until thaw is called (also
// when the test ends).
func freezeChild(t *testing.T, init int) (thaw func()) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	kids := freezetest.Children(init)
	for ; len(kids) == 0; kids = freezetest.Children(init) {
		if time.Now().After(deadline) {
			t.Fatalf("init %d has no child", init)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return freezetest.Nested(t, freezetest.Dir(t, init), kids[0])
}

// stuckCmd is a container whose init takes SIGTERM and waits for its
// child, which the test freezes.
const stuckCmd = `/bin/sh "-c" "trap 'exit 0' TERM; sleep 1000 & wait"`

// stuckDevice starts a device of two groups, "a" then "b": the container
// "stuck" (stuckCmd) in group stuckGroup, "other" (sleeper) in the other
// one, and waits for both STARTED.
func stuckDevice(t *testing.T, stuckGroup string) (*device, map[string]messages.ContainerInfo) {
	t.Helper()
	otherGroup := "a"
	if stuckGroup == "a" {
		otherGroup = "b"
	}
	storage := buildStorage(t, []map[string]any{{"name": "a"}, {"name": "b"}}, []ctr{
		{name: "stuck", group: stuckGroup, cmd: stuckCmd},
		{name: "other", group: otherGroup, cmd: sleeper},
	})
	d := startDevice(t, storage)
	return d, d.waitContainers("up", 20*time.Second, statusIs(messages.StatusStarted, "stuck", "other"))
}

// A stop through the API of a container whose processes survive SIGKILL:
// the container stays STOPPING, its init's pid and why shown, while the
// control socket serves and the other containers are managed as usual;
// a start of it is refused; once its processes end, it is STOPPED, its
// cgroups gone, and it starts again. Before, it was reported STOPPED with
// no pid after 30 s while its processes lived on, and every start failed
// on the container "left running".
func TestStopOfAContainerStuckInTheKernel(t *testing.T) {
	isolated.Require(t)
	t.Parallel() // mostly waits on the kill timeouts; each device is its own
	d, m := stuckDevice(t, "a")
	init := hostPid(t, nsInit(t, d), m["stuck"].Pid)
	dir := freezetest.Dir(t, init)
	thaw := freezeChild(t, init)
	if out, code := d.pvcontrol("containers", "stop", "stuck"); code != 0 {
		t.Fatalf("stop: %d %s", code, out)
	}
	// SIGTERM, its 10 s grace, SIGKILL, the driver's 10 s wait for the
	// init: then it is known stuck.
	m = d.waitContainers("stuck shown stuck", 40*time.Second, func(m map[string]messages.ContainerInfo) bool {
		return m["stuck"].Status == messages.StatusStopping && strings.Contains(m["stuck"].Error, "outlive the stop")
	})
	if m["stuck"].Pid == 0 {
		t.Errorf("stuck container shows no pid: %+v", m["stuck"])
	}
	start := time.Now()
	if out, code := d.pvcontrol("containers", "restart", "other"); code != 0 {
		t.Errorf("restart of another container: %d %s", code, out)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("restart of another container took %v", took)
	}
	if out, code := d.pvcontrol("containers", "start", "stuck"); code == 0 {
		t.Errorf("start of the stuck container accepted: %s", out)
	}
	time.Sleep(2 * time.Second)
	if c := d.waitContainers("still stuck", time.Second, func(map[string]messages.ContainerInfo) bool { return true })["stuck"]; c.Status != messages.StatusStopping {
		t.Errorf("with its processes alive: %s, want STOPPING", c.Status)
	}
	thaw()
	m = d.waitContainers("stuck stopped", 20*time.Second, statusIs(messages.StatusStopped, "stuck"))
	if c := m["stuck"]; c.Pid != 0 || c.Error != "" {
		t.Errorf("stopped at last: pid %d, error %q", c.Pid, c.Error)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("its cgroup %s is left: %v", dir, err)
	}
	if out, code := d.pvcontrol("containers", "start", "stuck"); code != 0 {
		t.Fatalf("start once stopped: %d %s", code, out)
	}
	d.waitContainers("stuck up again", 20*time.Second, statusIs(messages.StatusStarted, "stuck"))
}

// The device's stop goes on past a container whose processes survive
// SIGKILL, in its last group: the earlier group is stopped in order after
// it, and pantavisor is done with its stop within the grace, the SIGKILL's
// wait and the time its actor waits for the teardown. (In appengine mode
// the device's PID 1 then cannot end before the stuck process does: the
// kernel ends a pid namespace with its last task. On a device PID 1
// reboots.)
func TestDeviceStopGoesOnPastAContainerStuckInTheKernel(t *testing.T) {
	isolated.Require(t)
	t.Parallel() // mostly waits on the kill timeouts; each device is its own
	d, m := stuckDevice(t, "b")
	thaw := freezeChild(t, hostPid(t, nsInit(t, d), m["stuck"].Pid))
	start := time.Now()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitOutput("pantavisor stopped", 60*time.Second)
	if took := time.Since(start); took > 40*time.Second {
		t.Errorf("the stop took %v", took)
	}
	out := d.output()
	stuck := lineIndex(out, "container processes outlive the stop", "container=stuck")
	other := lineIndex(out, "container stopped", "container=other")
	if stuck < 0 || other < stuck {
		t.Errorf("other not stopped after stuck was found stuck (lines %d, %d):\n%s", stuck, other, out)
	}
	thaw()
	if code := d.waitExit(30 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// A non-reboot update whose changed container has processes that survive
// SIGKILL becomes a reboot: the running revision does not hand over (the
// next revision would make the container again in the places its stuck
// run holds), the device reboots, and the update, still INPROGRESS, is
// tried and committed by the next boot, which the stuck processes do not
// survive. Before, the container was taken for stopped, its new version
// failed to start on the container "left running" until the goal
// timeout, and the update was rolled back.
func TestNonRebootUpdateOfAContainerStuckInTheKernelReboots(t *testing.T) {
	isolated.Require(t)
	t.Parallel() // mostly waits on the kill timeouts; each device is its own
	dir := buildStorage(t, updateGroups(), updateCtrs("sys-v1", stuckCmd, nil))
	d := startDeviceEnv(t, dir, commitDelay)
	m := d.waitUp("first boot", 30*time.Second)
	thaw := freezeChild(t, hostPid(t, nsInit(t, d), m["b"].Pid))
	d.upload(buildStorage(t, updateGroups(), updateCtrs("sys-v1", echoer("b-v2"), nil)), "v2")
	if out, code := d.pvcontrol("cmd", "run", "locals/v2"); code != 0 {
		t.Fatalf("cmd run: %d %s", code, out)
	}
	// The reboot's stop: in appengine mode PID 1's pid namespace ends
	// with its last task, so the stuck one is let go then; a device's
	// PID 1 reboots at once.
	d.waitOutput("pantavisor stopped", 120*time.Second)
	thaw()
	p, seen := d.waitProgress("locals/v2", 90*time.Second)
	if p.Status != storage.StatusDone {
		t.Fatalf("final progress %+v (seen %v)", p, seen)
	}
	if !strings.Contains(d.output(), "no handover, the update needs a reboot") {
		t.Error("the handover was not refused")
	}
	d.waitConsole("b", "b-v2", 10*time.Second)
	if n := strings.Count(d.log(), "pantavisor starting"); n != 2 {
		t.Errorf("%d boots, want 2", n)
	}
}

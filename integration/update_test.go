//go:build integration

package integration

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/internal/revtest"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/storage"
)

// The whole update cycle on a running appengine device, driven only
// through pvcontrol (ours, and upstream's script with a tarball in pvr
// export's layout): upload, LOCAL_RUN, the transition, the try, the commit
// or the rollback, each checked on the progress upstream's tools read and
// on the containers.

// updateGroups: a system group with "sys", an app group with "a" and "b".
func updateGroups() []map[string]any {
	return []map[string]any{
		{"name": "core", "restart_policy": "system", "status_goal": "STARTED", "timeout": 30},
		{"name": "app", "status_goal": "STARTED", "timeout": 30},
	}
}

// echoer is a container that prints word and runs until stopped.
func echoer(word string) string {
	return `/bin/sh "-c" "trap 'exit 0' TERM; echo ` + word + `; while true; do sleep 0.1; done"`
}

// updateCtrs is the revision: sys and a unchanged across the tests' revisions, b
// given as its init command.
func updateCtrs(sysWord, bCmd string, bRun map[string]any) []ctr {
	return []ctr{
		{name: "sys", group: "core", cmd: echoer(sysWord)},
		{name: "a", group: "app", cmd: echoer("a-up")},
		{name: "b", group: "app", cmd: bCmd, run: bRun},
	}
}

// commitDelay shortens PV_UPDATER_COMMIT_DELAY (25 s) for the tests.
var commitDelay = []string{"PV_UPDATER_COMMIT_DELAY=1"}

// upload puts the revision Build laid out under dir into the device as
// locals/name, through bin/pvcontrol: its objects, then its state.
func (d *device) upload(dir, name string) {
	d.t.Helper()
	if out, code := d.install(dir, name); code != 0 {
		d.t.Fatalf("pvcontrol steps install: %d %s", code, out)
	}
}

// install uploads the revision Build laid out under dir as locals/name,
// as upload does, and returns pvcontrol's answer, for a test of a
// refusal.
func (d *device) install(dir, name string) (string, int) {
	d.t.Helper()
	tgz := filepath.Join(d.t.TempDir(), "rev.tgz")
	if err := revtest.Export(dir, tgz); err != nil {
		d.t.Fatal(err)
	}
	return d.pvcontrol("steps", "install", tgz, "locals/"+name)
}

// progress reads a revision's progress through pvcontrol; ok is false
// while the device does not answer (a reboot).
func (d *device) progress(rev string) (storage.Progress, bool) {
	out, code := d.pvcontrol("steps", "show-progress", rev)
	if code != 0 {
		return storage.Progress{}, false
	}
	p, err := storage.ParseProgress([]byte(out))
	return p, err == nil
}

// waitProgress polls rev's progress until it is final (DONE, UPDATED,
// ERROR, WONTGO) and returns it with every status seen on the way.
func (d *device) waitProgress(rev string, timeout time.Duration) (storage.Progress, []storage.Status) {
	d.t.Helper()
	return d.waitProgressFor(rev, "final", timeout, func(s storage.Status) bool { return s.Final() })
}

// waitProgressStatus polls rev's progress until it is want.
func (d *device) waitProgressStatus(rev string, want storage.Status, timeout time.Duration) (storage.Progress, []storage.Status) {
	d.t.Helper()
	return d.waitProgressFor(rev, string(want), timeout, func(s storage.Status) bool { return s == want })
}

// waitProgressFor polls rev's progress through pvcontrol, tolerating a
// device that does not answer (rebooting), until done holds for its
// status; it returns the progress and every status seen on the way.
func (d *device) waitProgressFor(rev, what string, timeout time.Duration, done func(storage.Status) bool) (storage.Progress, []storage.Status) {
	d.t.Helper()
	var seen []storage.Status
	deadline := time.Now().Add(timeout)
	for {
		p, ok := d.progress(rev)
		if ok && (len(seen) == 0 || seen[len(seen)-1] != p.Status) {
			seen = append(seen, p.Status)
		}
		if ok && done(p.Status) {
			return p, seen
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("progress of %s not %s after %v: %v", rev, what, timeout, seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runUpstream runs upstream's pvcontrol script against sock, as a
// management container would, with plain curl. It returns its output and
// exit code.
func runUpstream(t *testing.T, script, sock string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("sh", append([]string{script, "-s", sock}, args...)...)
	// The script would hand over to PVTEST_EXEC, and prefers a pvcurl in
	// PATH: plain curl, whatever the environment.
	cmd.Env = []string{"CURL_CMD=curl"}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PVTEST_EXEC=") && !strings.HasPrefix(e, "CURL_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("upstream pvcontrol: %v", err)
	}
	return string(out), 0
}

// bootEnv reads the appengine bootloader's variables.
func bootEnv(t *testing.T, dir string) bootloader.Env {
	t.Helper()
	env, err := bootloader.AppEngine{Dir: storage.Layout{Root: dir}.Boot()}.Load()
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func pidsOf(cs map[string]messages.ContainerInfo) map[string]int {
	out := map[string]int{}
	for n, c := range cs {
		out[n] = c.Pid
	}
	return out
}

// waitUp waits for a, b and sys STARTED, tolerating a device that is
// rebooting meanwhile.
func (d *device) waitUp(what string, timeout time.Duration) map[string]messages.ContainerInfo {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, code := d.pvcontrol("ls", "--json")
		var cs []messages.ContainerInfo
		if code == 0 && json.Unmarshal([]byte(out), &cs) == nil {
			m := map[string]messages.ContainerInfo{}
			for _, c := range cs {
				m[c.Name] = c
			}
			if statusIs(messages.StatusStarted, "sys", "a", "b")(m) {
				return m
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s: not all STARTED after %v: %s", what, timeout, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestUpdateNonRebootSwapsOneContainer(t *testing.T) {
	isolated.Require(t)
	dir := buildStorage(t, updateGroups(), updateCtrs("sys-v1", echoer("b-v1"), nil))
	d := startDeviceEnv(t, dir, commitDelay)
	before := pidsOf(d.waitUp("first boot", 30*time.Second))

	next := buildStorage(t, updateGroups(), updateCtrs("sys-v1", echoer("b-v2"), nil))
	d.upload(next, "v2")
	if p, ok := d.progress("locals/v2"); !ok || p.Msg != storage.MsgInstalled {
		t.Fatalf("after upload: %+v %v", p, ok)
	}
	if out, code := d.pvcontrol("cmd", "run", "locals/v2"); code != 0 {
		t.Fatalf("cmd run: %d %s", code, out)
	}
	p, seen := d.waitProgress("locals/v2", 60*time.Second)
	if p.Status != storage.StatusUpdated || p.Msg != storage.MsgUpdated {
		t.Fatalf("final progress %+v (seen %v)", p, seen)
	}
	if !containsStatus(seen, storage.StatusTesting) {
		t.Errorf("TESTING never seen: %v", seen)
	}
	after := pidsOf(d.waitUp("after the update", 10*time.Second))
	if after["sys"] != before["sys"] || after["a"] != before["a"] {
		t.Errorf("unchanged containers were restarted: before %v after %v", before, after)
	}
	if after["b"] == before["b"] {
		t.Errorf("b was not swapped: before %v after %v", before, after)
	}
	d.waitConsole("b", "b-v2", 10*time.Second)
	if n := strings.Count(d.log(), "pantavisor starting"); n != 1 {
		t.Errorf("%d boots: a non-reboot update rebooted", n)
	}
	// pantavisor's own log moved to the running revision's directory:
	// left in the boot revision's, the keeper emptied it for the new
	// revision's floods, and GC removed it while it was written.
	own, err := os.ReadFile(filepath.Join(dir, "logs", "locals", "v2", "pantavisor", "pantavisor.log"))
	if err != nil || !strings.Contains(string(own), "update finished without reboot") {
		t.Errorf("pantavisor's log in the running revision's directory: %v\n%s", err, own)
	}
	// Not committed: the next boot tries it again (upstream's UPDATED).
	if env := bootEnv(t, dir); env.Try() != "locals/v2" || env.Committed() != "0" {
		t.Errorf("bootloader after UPDATED: %v", env)
	}
	if out, code := d.pvcontrol("steps", "get", "current"); code != 0 || !strings.Contains(out, "b-v2") {
		// The state names lxc.container.conf by sha: compare with the upload.
		want, _ := os.ReadFile(filepath.Join(next, "trails", "0", ".pvr", "json"))
		if strings.TrimSpace(out) != strings.TrimSpace(string(want)) {
			t.Errorf("steps get current: %d %s", code, out)
		}
	}
	// A second LOCAL_RUN of a finished update is allowed; a reboot now is
	// allowed too (no update under test).
	if out, code := d.pvcontrol("cmd", "reboot", "test"); code != 0 {
		t.Errorf("cmd reboot after UPDATED: %d %s", code, out)
	}
	// The reboot tries locals/v2 again and commits it.
	p, _ = d.waitProgressStatus("locals/v2", storage.StatusDone, 60*time.Second)
	if p.Msg != storage.MsgDone {
		t.Errorf("after the reboot: %+v", p)
	}
	if env := bootEnv(t, dir); env.Committed() != "locals/v2" || env.Try() != "" {
		t.Errorf("bootloader after DONE: %v", env)
	}
}

// A container stopped through the API stays stopped across a non-reboot
// update that keeps it, and the update finishes: before, the next
// revision waited for it to reach its goal, and the update stayed
// INPROGRESS for good.
func TestUpdateNonRebootKeepsAContainerStoppedThroughTheAPI(t *testing.T) {
	isolated.Require(t)
	d := deviceWithAStopped(t)
	d.upload(buildStorage(t, updateGroups(), updateCtrs("sys-v1", echoer("b-v2"), nil)), "v2")
	if out, code := d.pvcontrol("cmd", "run", "locals/v2"); code != 0 {
		t.Fatalf("cmd run: %d %s", code, out)
	}
	if p, seen := d.waitProgress("locals/v2", 60*time.Second); p.Status != storage.StatusUpdated {
		t.Fatalf("final progress %+v (seen %v)", p, seen)
	}
	d.waitConsole("b", "b-v2", 10*time.Second)
	d.aStaysStoppedUntilStarted("the update")
}

// deviceWithAStopped boots updateCtrs (sys, a, b) and stops a with
// pvcontrol.
func deviceWithAStopped(t *testing.T) *device {
	t.Helper()
	dir := buildStorage(t, updateGroups(), updateCtrs("sys-v1", echoer("b-v1"), nil))
	d := startDeviceEnv(t, dir, commitDelay)
	d.waitUp("first boot", 30*time.Second)
	if out, code := d.pvcontrol("containers", "stop", "a"); code != 0 {
		t.Fatalf("stop a: %d %s", code, out)
	}
	d.waitContainers("a stopped", 20*time.Second, statusIs(messages.StatusStopped, "a"))
	return d
}

// aStaysStoppedUntilStarted checks that a, stopped through the API, is
// still STOPPED after what happened (pid 0, goal STOPPED), and that
// pvcontrol starts it again.
func (d *device) aStaysStoppedUntilStarted(after string) {
	d.t.Helper()
	m := d.waitContainers("a still stopped", time.Second, statusIs(messages.StatusStopped, "a"))
	if m["a"].Pid != 0 || m["a"].StatusGoal != "STOPPED" {
		d.t.Errorf("a after %s: pid %d, goal %s; want 0 and STOPPED", after, m["a"].Pid, m["a"].StatusGoal)
	}
	if out, code := d.pvcontrol("containers", "start", "a"); code != 0 {
		d.t.Fatalf("start a: %d %s", code, out)
	}
	d.waitUp("a started again", 20*time.Second)
}

func containsStatus(seen []storage.Status, s storage.Status) bool {
	for _, x := range seen {
		if x == s {
			return true
		}
	}
	return false
}

func TestUpdateOfSystemContainerRebootsAndCommits(t *testing.T) {
	isolated.Require(t)
	dir := buildStorage(t, updateGroups(), updateCtrs("sys-v1", echoer("b-v1"), nil))
	d := startDeviceEnv(t, dir, commitDelay)
	d.waitUp("first boot", 30*time.Second)
	d.upload(buildStorage(t, updateGroups(), updateCtrs("sys-v2", echoer("b-v1"), nil)), "v2")
	if out, code := d.pvcontrol("cmd", "run", "locals/v2"); code != 0 {
		t.Fatalf("cmd run: %d %s", code, out)
	}
	p, seen := d.waitProgress("locals/v2", 90*time.Second)
	if p.Status != storage.StatusDone || p.Msg != storage.MsgDone {
		t.Fatalf("final progress %+v (seen %v)", p, seen)
	}
	d.waitUp("after the reboot", 10*time.Second)
	d.waitConsole("sys", "sys-v2", 10*time.Second)
	if n := strings.Count(d.log(), "pantavisor starting"); n != 2 {
		t.Errorf("%d boots, want 2", n)
	}
	if env := bootEnv(t, dir); env.Committed() != "locals/v2" || env.Try() != "" {
		t.Errorf("bootloader after DONE: %v", env)
	}
	if !(storage.Layout{Root: dir}).Done("locals/v2") {
		t.Error("no done flag")
	}
	if err := (storage.Layout{Root: dir}).Check(); err != nil {
		t.Errorf("storage: %v", err)
	}
}

// An update that fails its test (a container gives up; a group misses
// its goal) is rolled back: ERROR with upstream's message, pv_try cleared,
// a reboot into the committed revision, which runs again.
func TestFailedUpdateRollsBack(t *testing.T) {
	isolated.Require(t)
	slow := updateGroups()
	slow[1]["status_goal"], slow[1]["timeout"] = "READY", 2 // b never signals ready
	for _, c := range []struct {
		name   string
		groups []map[string]any
		bCmd   string
		bRun   map[string]any
		msg    string
		// boots: a non-reboot try, then the rollback's; a device.json
		// change (the goal) boots the try too.
		boots int
	}{
		{"container gives up", updateGroups(), `/bin/sh "-c" "echo b-crash; exit 1"`,
			map[string]any{"auto_recovery": map[string]any{"policy": "no"}}, storage.MsgContainerFailed, 2},
		{"goal timeout", slow, echoer("b-v2"), nil, storage.MsgStatusGoalFailed, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := buildStorage(t, updateGroups(), updateCtrs("sys-v1", echoer("b-v1"), nil))
			d := startDeviceEnv(t, dir, commitDelay)
			d.waitUp("first boot", 30*time.Second)
			d.upload(buildStorage(t, c.groups, updateCtrs("sys-v1", c.bCmd, c.bRun)), "bad")
			if out, code := d.pvcontrol("cmd", "run", "locals/bad"); code != 0 {
				t.Fatalf("cmd run: %d %s", code, out)
			}
			p, seen := d.waitProgress("locals/bad", 60*time.Second)
			if p.Status != storage.StatusError || p.Msg != c.msg {
				t.Fatalf("final progress %+v (seen %v)", p, seen)
			}
			d.waitOutput("rollback: ", 30*time.Second)
			// Each boot is a new pid namespace: the boots are counted.
			d.waitUp("after the rollback", 60*time.Second)
			d.waitConsole("b", "b-v1\nb-v1", 10*time.Second)
			if n := strings.Count(d.log(), "pantavisor starting"); n != c.boots {
				t.Errorf("%d boots, want %d", n, c.boots)
			}
			if env := bootEnv(t, dir); env.Committed() != "0" || env.Try() != "" {
				t.Errorf("bootloader after the rollback: %v", env)
			}
			if err := (storage.Layout{Root: dir}).Check(); err != nil {
				t.Errorf("storage: %v", err)
			}
		})
	}
}

// Upstream's own pvcontrol script drives a whole update: steps install of
// a tarball in pvr export's layout, cmd run, show-progress.
func TestUpstreamPvcontrolDrivesAnUpdate(t *testing.T) {
	isolated.Require(t)
	script, err := filepath.Abs("../testdata/upstream-tools/pvcontrol")
	if err != nil {
		t.Fatal(err)
	}
	dir := buildStorage(t, updateGroups(), updateCtrs("sys-v1", echoer("b-v1"), nil))
	d := startDeviceEnv(t, dir, commitDelay)
	before := pidsOf(d.waitUp("first boot", 30*time.Second))
	tgz := filepath.Join(t.TempDir(), "rev.tgz")
	if err := revtest.Export(buildStorage(t, updateGroups(), updateCtrs("sys-v1", echoer("b-up"), nil)), tgz); err != nil {
		t.Fatal(err)
	}
	up := func(args ...string) string {
		t.Helper()
		out, code := runUpstream(t, script, d.sock(), args...)
		if code != 0 {
			t.Fatalf("upstream pvcontrol %q: %d %s", args, code, out)
		}
		return out
	}
	up("steps", "install", tgz, "locals/up")
	if out := up("steps", "show-progress", "locals/up"); !strings.Contains(out, storage.MsgInstalled) {
		t.Fatalf("show-progress after install: %s", out)
	}
	up("cmd", "run", "locals/up")
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(up("steps", "show-progress", "locals/up"), storage.MsgUpdated) {
		if time.Now().After(deadline) {
			t.Fatalf("no UPDATED: %s", up("steps", "show-progress", "locals/up"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	after := pidsOf(d.waitUp("after the update", 10*time.Second))
	if after["sys"] != before["sys"] || after["a"] != before["a"] || after["b"] == before["b"] {
		t.Errorf("pids before %v after %v", before, after)
	}
	if out := up("steps", "get", "current"); !strings.Contains(out, "device.json") {
		t.Errorf("steps get current: %s", out)
	}
}

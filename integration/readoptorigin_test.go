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

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/storage"
)

// originGroups: one app group, goal STARTED.
func originGroups() []map[string]any {
	return []map[string]any{{"name": "app", "status_goal": "STARTED", "timeout": 30}}
}

// originApp is "app" with a revision-persistent volume "data" bound at
// /data; each start says whether it found the marker a previous run of
// the same revision volume wrote, then writes it; SIGUSR1 makes it exit 7
// (restarted in place by its policy). tag makes two versions differ.
func originApp(tag string) ctr {
	return ctr{name: "app", group: "app",
		cmd: `/bin/sh "-c" "trap 'exit 7' USR1; trap 'exit 0' TERM; echo app-` + tag + `; if [ -f /data/marker ]; then echo app-found-marker; else echo app-fresh-data; fi; echo written > /data/marker; while true; do sleep 0.1; done"`,
		lxc: []string{"lxc.mount.entry = /volumes/app/data data none bind,rw,create=dir 0 0"},
		run: map[string]any{
			"auto_recovery": map[string]any{"policy": "always", "retry_delay": 0},
			"storage": map[string]any{
				"lxc-overlay": map[string]any{"persistence": "boot"},
				"data":        map[string]any{"persistence": "revision"},
			}},
	}
}

// localRun uploads the revision laid out in src as locals/name, runs it
// and waits for UPDATED (a non-reboot update).
func (d *device) localRun(src, name string) {
	d.t.Helper()
	d.upload(src, name)
	if out, code := d.pvcontrol("cmd", "run", "locals/"+name); code != 0 {
		d.t.Fatalf("cmd run locals/%s: %d %s", name, code, out)
	}
	if p, seen := d.waitProgress("locals/"+name, 60*time.Second); p.Status != storage.StatusUpdated {
		d.t.Fatalf("locals/%s: final progress %+v (seen %v)", name, p, seen)
	}
}

// killSupervisorReadopt SIGKILLs the supervisor and waits until its successor
// re-adopted names with their pids.
func (d *device) killSupervisorReadopt(names ...string) map[string]messages.ContainerInfo {
	d.t.Helper()
	c := ctrlClient(d.sock())
	before, err := getContainers(c)
	if err != nil {
		d.t.Fatal(err)
	}
	sup := supervisor(d)
	if sup == 0 {
		d.t.Fatal("no supervisor")
	}
	at := time.Now()
	syscall.Kill(sup, syscall.SIGKILL)
	_, after := readopted(d.t, c, before, names, at)
	return after
}

// restartApp makes app exit 7 and waits until its policy restarted it.
func (d *device) restartApp() map[string]messages.ContainerInfo {
	d.t.Helper()
	m := d.waitContainers("app STARTED", 20*time.Second, statusIs(messages.StatusStarted, "app"))
	hp := hostPid(d.t, d.cmd.Process.Pid, m["app"].Pid)
	for deadline := time.Now().Add(10 * time.Second); !catches(hp, syscall.SIGUSR1); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			d.t.Fatalf("app (pid %d) never set its SIGUSR1 trap", hp)
		}
	}
	syscall.Kill(hp, syscall.SIGUSR1)
	return d.waitContainers("app restarted after its exit 7", 30*time.Second, func(n map[string]messages.ContainerInfo) bool {
		return n["app"].Status == messages.StatusStarted && n["app"].Pid != m["app"].Pid
	})
}

// consoles lists app's console log files, with the counts of the two
// markers in each.
func consoles(t *testing.T, dir string) string {
	paths, _ := filepath.Glob(filepath.Join(dir, "logs", "*", "app", "console.log"))
	locals, _ := filepath.Glob(filepath.Join(dir, "logs", "locals", "*", "app", "console.log"))
	var b strings.Builder
	for _, p := range append(paths, locals...) {
		data, _ := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		b.WriteString(rel + ": found-marker " + itoa(strings.Count(string(data), "app-found-marker")) +
			", fresh-data " + itoa(strings.Count(string(data), "app-fresh-data")) + "\n")
	}
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// other is the second container of these tests, changed by its words.
func other(w string) ctr { return ctr{name: "other", group: "app", cmd: echoer(w)} }

// originDevice boots revision "1", committed, of app (v1) and other
// (other-v1), and returns the device, its storage and the containers.
func originDevice(t *testing.T) (*device, string, storage.Layout, map[string]messages.ContainerInfo) {
	t.Helper()
	dir := buildStorage(t, originGroups(), []ctr{originApp("v1"), other("other-v1")})
	commitAs(t, dir, "1")
	d := startDeviceEnv(t, dir, commitDelay)
	m := d.waitContainers("first boot", 30*time.Second, statusIs(messages.StatusStarted, "app", "other"))
	return d, dir, storage.Layout{Root: dir}, m
}

// Two non-reboot updates (1 -> locals/b -> locals/c): app, changed by
// locals/b and kept by locals/c, runs on locals/b's revision volume and
// console log. The supervisor is killed and PID 1 starts it again, which
// re-adopts app. What app runs on must stay as before the kill: GC keeps
// locals/b, and app restarted in place finds its data again.
func TestReadoptKeptTwiceKeepsItsRevision(t *testing.T) {
	isolated.Require(t)
	d, dir, l, _ := originDevice(t)

	d.localRun(buildStorage(t, originGroups(), []ctr{originApp("v2"), other("other-v1")}), "b") // app changes
	m := d.waitContainers("after locals/b", 20*time.Second, statusIs(messages.StatusStarted, "app", "other"))
	appPid := m["app"].Pid
	d.localRun(buildStorage(t, originGroups(), []ctr{originApp("v2"), other("other-v2")}), "c") // other changes
	m = d.waitContainers("after locals/c", 20*time.Second, statusIs(messages.StatusStarted, "app", "other"))
	if m["app"].Pid != appPid {
		t.Fatalf("app restarted by locals/c (%d -> %d): the premise does not hold", appPid, m["app"].Pid)
	}
	marker := filepath.Join(l.RevisionDisk("locals/b", "app", "data"), "marker")
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("app's marker on locals/b's revision volume: %v", err)
	}
	t.Logf("bootloader: %v", bootEnv(t, dir))

	// Control: before any kill, GC keeps locals/b (root's backing).
	if out, code := d.pvcontrol("cmd", "run-gc"); code != 0 {
		t.Fatalf("run-gc: %d %s", code, out)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("GC before the kill removed locals/b's volume under app: %v", err)
	}

	after := d.killSupervisorReadopt("app", "other")
	hp := hostPid(t, d.cmd.Process.Pid, after["app"].Pid)
	t.Logf("re-adopted: app pid %d (host %d), status %s", after["app"].Pid, hp, after["app"].Status)
	if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(hp), "root", "data", "marker")); err != nil {
		t.Errorf("app's /data/marker before the restart: %v", err)
	} else {
		t.Logf("app's /data/marker (same process) reads %q", b)
	}

	// GC after the re-adoption, app still the same process.
	if out, code := d.pvcontrol("cmd", "run-gc"); code != 0 {
		t.Fatalf("run-gc: %d %s", code, out)
	}
	for _, ln := range strings.Split(d.log(), "\n") {
		if strings.Contains(ln, "storage garbage collected") {
			t.Logf("GC: %s", ln)
		}
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("GC after the re-adoption removed locals/b's revision volume under the running app: %v", err)
	}
	if _, err := os.Stat(l.Trail("locals/b")); err != nil {
		t.Errorf("GC after the re-adoption removed locals/b: %v", err)
	}
	if _, err := os.Stat(filepath.Join(l.Logs("locals/b"), "app", "console.log")); err != nil {
		t.Errorf("GC after the re-adoption removed the console log app (pid %d) writes: %v", after["app"].Pid, err)
	}
	if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(hp), "root", "data", "marker")); err != nil {
		t.Errorf("app (same process, pid %d) lost its /data/marker: %v", after["app"].Pid, err)
	} else {
		t.Logf("app's /data/marker after GC reads %q", b)
	}
	if err := os.WriteFile(filepath.Join("/proc", strconv.Itoa(hp), "root", "data", "again"), []byte("x"), 0o644); err != nil {
		t.Logf("writing app's /data after GC: %v", err)
	}
	if cur := d.waitContainers("app", 5*time.Second, statusIs(messages.StatusStarted, "app")); cur["app"].Pid != after["app"].Pid {
		t.Errorf("app pid %d -> %d", after["app"].Pid, cur["app"].Pid)
	}

	// app restarted in place: its init is started again on the record
	// the re-adoption made.
	d.restartApp()
	time.Sleep(time.Second)
	t.Logf("app console logs after the restart in place:\n%s", consoles(t, dir))
	if n := strings.Count(d.console("app"), "app-found-marker"); n != 1 {
		t.Errorf("app restarted after re-adoption did not find its revision data: %d found-marker lines, want 1\n%s",
			n, consoles(t, dir))
	}
}

// One non-reboot update (1 -> locals/b, app unchanged): app was started
// by 1's engine and kept by locals/b. A restart in place before the kill
// finds its data on 1's revision volume; after the kill and the
// re-adoption, the same restart must find it too.
func TestReadoptKeptOnceKeepsItsRevision(t *testing.T) {
	isolated.Require(t)
	d, dir, l, m := originDevice(t)
	d.waitConsole("app", "app-fresh-data", 10*time.Second)
	appPid := m["app"].Pid

	d.localRun(buildStorage(t, originGroups(), []ctr{originApp("v1"), other("other-v2")}), "b") // other changes
	m = d.waitContainers("after locals/b", 20*time.Second, statusIs(messages.StatusStarted, "app", "other"))
	if m["app"].Pid != appPid {
		t.Fatalf("app restarted by locals/b (%d -> %d): the premise does not hold", appPid, m["app"].Pid)
	}
	// Control: a restart in place without a kill finds 1's data.
	d.restartApp()
	d.waitConsole("app", "app-found-marker", 10*time.Second)
	t.Logf("before the kill:\n%s", consoles(t, dir))

	d.killSupervisorReadopt("app", "other")
	d.restartApp()
	time.Sleep(time.Second)
	t.Logf("after the kill and a restart in place:\n%s", consoles(t, dir))
	if n := strings.Count(d.console("app"), "app-found-marker"); n != 2 {
		t.Errorf("app restarted after re-adoption did not find its revision data: %d found-marker lines, want 2\n%s",
			n, consoles(t, dir))
	}
	for _, rev := range []string{"1", "locals/b"} {
		_, err := os.Stat(filepath.Join(l.RevisionDisk(rev, "app", "data"), "marker"))
		t.Logf("marker on %s's revision volume: %v", rev, err)
	}
}

// A container stopped through the API stays down when PID 1 starts the
// supervisor again: the books on the work tmpfs carry the stop. Before,
// the new supervisor started it as at boot.
func TestReadoptLeavesAContainerStoppedThroughTheAPIDown(t *testing.T) {
	isolated.Require(t)
	d := deviceWithAStopped(t)
	d.killSupervisorReadopt("sys", "b")
	time.Sleep(time.Second) // a start, were one made, would show by now
	d.aStaysStoppedUntilStarted("the supervisor's restart")
}

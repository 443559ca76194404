//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/runtime/driver"
	"github.com/pantavisor/pv/runtime/testrootfs"
)

const sleeper = `/bin/sh "-c" "trap 'echo stopped-by-term; exit 0' TERM; echo up; while true; do sleep 0.1; done"`

// Three groups, six containers: g1 waits for READY (its containers signal
// it through the bind-mounted control socket), g2 holds a container whose
// READY never comes (its 2 s timeout lets g3 start), g3 plain.
func TestGroupsOrderReadyAndTimeout(t *testing.T) {
	isolated.Require(t)
	storage := buildStorage(t, []map[string]any{
		{"name": "g1", "status_goal": "READY", "timeout": 30},
		{"name": "g2", "status_goal": "STARTED", "timeout": 2},
		{"name": "g3", "status_goal": "STARTED", "timeout": 30},
	}, []ctr{
		{name: "r1", group: "g1", cmd: `/bin/pvapp "ready" "/bin/sh" "-c" "sleep 1000"`},
		{name: "r2", group: "g1", cmd: `/bin/pvapp "ready" "/bin/sh" "-c" "sleep 1000"`},
		{name: "s1", group: "g2", cmd: sleeper},
		{name: "s2", group: "g2", cmd: sleeper, run: map[string]any{"status_goal": "READY"}},
		{name: "t1", group: "g3", cmd: sleeper},
		{name: "t2", group: "g3", cmd: sleeper},
	})
	d := startDevice(t, storage)
	start := time.Now()
	d.waitContainers("g1 READY", 20*time.Second, statusIs(messages.StatusReady, "r1", "r2"))
	m := d.waitContainers("g2 started", 20*time.Second, statusIs(messages.StatusStarted, "s1", "s2"))
	if m["t1"].Status != messages.StatusBlocked || m["t2"].Status != messages.StatusBlocked {
		t.Errorf("g3 not blocked while s2 waits for READY: t1=%s t2=%s", m["t1"].Status, m["t2"].Status)
	}
	d.waitContainers("g3 started after g2's timeout", 20*time.Second, statusIs(messages.StatusStarted, "t1", "t2"))
	if el := time.Since(start); el < 2*time.Second {
		t.Errorf("g3 started %v after boot, before g2's 2 s timeout", el)
	}
	// READY only from a container whose goal is READY.
	if out, code := d.pvcontrol("groups", "ls", "--json"); code != 0 || !strings.Contains(out, `"g1"`) {
		t.Errorf("groups ls: %d %s", code, out)
	}
	log := d.log()
	order := [][2]string{{"r1", "s1"}, {"r2", "s1"}, {"r1", "s2"}, {"s1", "t1"}, {"s2", "t2"}}
	for _, p := range order {
		a, b := lineIndex(log, "container started", "container="+p[0]), lineIndex(log, "starting container", "container="+p[1])
		if a < 0 || b < 0 || a > b {
			t.Errorf("%s did not start before %s was started (lines %d, %d)", p[0], p[1], a, b)
		}
	}
	// Containers of one group are started together: both starts are
	// requested before either completes.
	s1, s2 := lineIndex(log, "starting container", "container=s1"), lineIndex(log, "starting container", "container=s2")
	e1, e2 := lineIndex(log, "container started", "container=s1"), lineIndex(log, "container started", "container=s2")
	if max(s1, s2) > min(e1, e2) {
		t.Errorf("g2 containers started one after the other: starting %d,%d started %d,%d", s1, s2, e1, e2)
	}
}

// An upstream-shaped container: squashfs root, lxc.container.conf with init
// command, environment, a mount entry from a storage volume and a dropped
// capability, all checked from inside the container.
func TestUpstreamShapedContainer(t *testing.T) {
	isolated.Require(t)
	storage := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{{
		name: "up", group: "app",
		cmd: `/bin/sh "-c" "echo ARGS=$0-$1; echo FOO=$FOO; echo GREETING=$GREETING; grep CapEff /proc/self/status; cat /data/hello.txt; hostname; ` + idle + `" "first" "second"`,
		lxc: []string{
			"lxc.environment = FOO=bar baz",
			"lxc.environment = GREETING=hi",
			"lxc.mount.entry = /volumes/up/docker--data data none bind,rw,create=dir 0 0",
			"lxc.cap.drop = net_raw sys_module",
			"lxc.uts.name = upstream-box",
		},
		run: map[string]any{"storage": map[string]any{
			"lxc-overlay":  map[string]any{"persistence": "boot"},
			"docker--data": map[string]any{"persistence": "permanent"},
		}},
	}})
	dataDir := filepath.Join(storage, "disks", "perm", "up", "docker--data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "hello.txt"), []byte("hello-from-volume\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDevice(t, storage)
	d.waitContainers("up started", 20*time.Second, statusIs(messages.StatusStarted, "up"))
	var out string
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out, "upstream-box") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		out = d.console("up")
	}
	for _, want := range []string{"ARGS=first-second", "FOO=bar baz", "GREETING=hi", "hello-from-volume", "upstream-box"} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
	capEff := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "CapEff:") {
			capEff = strings.TrimSpace(strings.TrimPrefix(l, "CapEff:"))
		}
	}
	caps, err := strconv.ParseUint(capEff, 16, 64)
	if err != nil {
		t.Fatalf("no CapEff in console: %q", out)
	}
	const netRaw, sysModule, netAdmin = 13, 16, 12
	if caps&(1<<netRaw) != 0 || caps&(1<<sysModule) != 0 {
		t.Errorf("dropped capabilities still effective: %#x", caps)
	}
	if caps&(1<<netAdmin) == 0 {
		t.Errorf("net_admin missing though not dropped: %#x", caps)
	}
	// The init was bin/pvinit (beside bin/pantavisor), not a copy of the
	// supervisor.
	if lineIndex(d.log(), `msg="container init"`, "pvinit", "sealing=overlay") < 0 {
		t.Errorf("the log does not show pvinit as the containers' init:\n%s", d.log())
	}
}

// Twenty containers exit with distinct codes (some killed by signals) while
// orphans are reaped in pantavisor's pid namespace: every exit is reported
// exactly and no zombie is left.
func TestExitCodesWhileReapingOrphans(t *testing.T) {
	isolated.Require(t)
	// x04 and x14 run until the test SIGKILLs them (from outside: an init
	// ignores every signal it has no handler for, except SIGKILL from an
	// ancestor namespace); x09 and x19 die by SIGSEGV (a fault is always
	// delivered); the others exit on their own with codes 1..20.
	signals := map[int]syscall.Signal{4: syscall.SIGKILL, 9: syscall.SIGSEGV, 14: syscall.SIGKILL, 19: syscall.SIGSEGV}
	var cs []ctr
	for i := 0; i < 20; i++ {
		cmd := fmt.Sprintf(`/bin/sh "-c" "sleep 0.3 & sleep 0.%d; exit %d"`, 5+i%4, i+1)
		switch signals[i] {
		case syscall.SIGKILL:
			cmd = `/bin/sh "-c" "sleep 0.3 & exec sleep 1000"`
		case syscall.SIGSEGV:
			cmd = `/bin/sh "-c" "sleep 0.3 & sleep 0.6; exec /bin/pvapp segv"`
		}
		cs = append(cs, ctr{name: fmt.Sprintf("x%02d", i), group: "app", cmd: cmd,
			run: map[string]any{"auto_recovery": map[string]any{"policy": "no"}}})
	}
	storage := buildStorage(t, []map[string]any{{"name": "app"}}, cs)
	d := startDevice(t, storage)
	// Orphans in pantavisor's own pid namespace: children of a shell that
	// exits at once are re-parented to its PID 1, the reaper.
	pid1 := nsInit(t, d)
	for i := 0; i < 5; i++ {
		out, err := exec.Command("nsenter", "-t", strconv.Itoa(pid1), "-p", "-m", "--", "/bin/sh", "-c",
			"for i in 1 2 3 4; do sleep 0.2 & done; exit 0").CombinedOutput()
		if err != nil {
			t.Fatalf("nsenter: %v: %s", err, out)
		}
	}
	running := d.waitContainers("kill targets started", 20*time.Second, statusIs(messages.StatusStarted, "x04", "x14"))
	for i, sig := range signals {
		if sig != syscall.SIGKILL {
			continue
		}
		name := fmt.Sprintf("x%02d", i)
		pid := hostPid(t, pid1, running[name].Pid)
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatalf("kill %s: %v", name, err)
		}
	}
	m := d.waitContainers("all exited", 30*time.Second, func(m map[string]messages.ContainerInfo) bool {
		for _, c := range cs {
			if m[c.name].LastExit == nil {
				return false
			}
		}
		return true
	})
	for i, c := range cs {
		got := m[c.name]
		want := messages.Exit{Code: i + 1}
		if sig, ok := signals[i]; ok {
			want = messages.Exit{Code: 128 + int(sig), Signal: int(sig)}
		}
		if got.LastExit.Code != want.Code || got.LastExit.Signal != want.Signal {
			t.Errorf("%s: exit %+v, want code %d signal %d", c.name, *got.LastExit, want.Code, want.Signal)
		}
		if got.Status != messages.StatusFailed {
			t.Errorf("%s: status %s, want FAILED", c.name, got.Status)
		}
	}
	time.Sleep(500 * time.Millisecond) // the orphans' sleeps end
	if z := zombiesIn(t, pid1); len(z) > 0 {
		t.Errorf("zombies left in pantavisor's namespace: %v", z)
	}
}

// SIGTERM stops every container in reverse group order, pantavisor exits 0
// and leaves no mount, loop device, cgroup or process behind.
func TestSigtermStopsInReverseOrderAndCleansUp(t *testing.T) {
	isolated.Require(t)
	storage := buildStorage(t, []map[string]any{
		{"name": "first"}, {"name": "second"}, {"name": "third"},
	}, []ctr{
		{name: "a", group: "first", cmd: sleeper},
		{name: "b", group: "second", cmd: sleeper},
		{name: "c", group: "third", cmd: sleeper},
		{name: "c2", group: "third", cmd: `/bin/sh "-c" "exec sleep 1000"`}, // ignores SIGTERM: killed
	})
	d := startDevice(t, storage)
	d.waitContainers("all started", 20*time.Second, statusIs(messages.StatusStarted, "a", "b", "c", "c2"))
	// A container's init ignores SIGTERM until it installs its handler:
	// wait until each has (it prints "up" after its trap).
	for _, n := range []string{"a", "b", "c"} {
		d.waitConsole(n, "up", 10*time.Second)
	}
	if code := d.stop(60 * time.Second); code != 0 {
		t.Fatalf("pantavisor exit code %d", code)
	}
	log := d.log()
	stopped := func(name string) int { return lineIndex(log, "container stopped", "container="+name) }
	stopping := func(name string) int { return lineIndex(log, "stopping container", "container="+name) }
	for _, p := range [][2]string{{"c", "b"}, {"c2", "b"}, {"b", "a"}} {
		if stopped(p[0]) < 0 || stopping(p[1]) < 0 || stopped(p[0]) > stopping(p[1]) {
			t.Errorf("%s was not stopped before %s (lines %d, %d)", p[0], p[1], stopped(p[0]), stopping(p[1]))
		}
	}
	for _, n := range []string{"a", "b", "c"} {
		if !strings.Contains(d.console(n), "stopped-by-term") {
			t.Errorf("%s did not get SIGTERM: %q", n, d.console(n))
		}
	}
	if m := testrootfs.MountsUnder(storage); len(m) > 0 {
		t.Errorf("mounts left under storage: %v", m)
	}
	if m := testrootfs.MountsUnder(d.run); len(m) > 0 {
		t.Errorf("mounts left under run: %v", m)
	}
	objects, _ := filepath.Glob(filepath.Join(storage, "objects", "*"))
	for _, o := range objects {
		if l := testrootfs.LoopsBackedBy(o); len(l) > 0 {
			t.Errorf("loop devices left on %s: %v", o, l)
		}
	}
	if cg := cgroupsNamed(driver.DeviceCgroupParent(storage)); len(cg) > 0 {
		t.Errorf("cgroups left: %v", cg)
	}
	if p := otherProcesses(); len(p) > 0 {
		t.Errorf("processes left: %v", p)
	}
}

// hostPid maps a pid as pantavisor sees it (in the namespace whose PID 1 is
// pid1) to the pid this test sees, through /proc/<pid>/status NSpid.
func hostPid(t *testing.T, pid1, nsPid int) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		v, _ := statusLine(pid, "NSpid")
		// NSpid lists this pid from our namespace inwards; the second
		// entry is the pid in pantavisor's namespace.
		if f := strings.Fields(v); len(f) >= 2 && f[1] == strconv.Itoa(nsPid) && isDescendant(pid, pid1) {
			return pid
		}
	}
	t.Fatalf("no process with pid %d in pantavisor's namespace", nsPid)
	return 0
}

func isDescendant(pid, ancestor int) bool {
	for pid > 1 {
		if pid == ancestor {
			return true
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		s := string(data)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if pid, err = strconv.Atoi(f[1]); err != nil {
			return false
		}
	}
	return false
}

// nsInit returns the host pid of the device's PID 1 (the reaper): the only
// child of the appengine host process.
func nsInit(t *testing.T, d *device) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", d.cmd.Process.Pid, d.cmd.Process.Pid))
		if f := strings.Fields(string(data)); len(f) > 0 {
			pid, err := strconv.Atoi(f[0])
			if err == nil {
				return pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("appengine PID 1 not found")
	return 0
}

// zombiesIn lists zombie processes whose parent is pid1.
func zombiesIn(t *testing.T, pid1 int) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(data)
		rest := s[strings.LastIndexByte(s, ')')+2:]
		f := strings.Fields(rest)
		if len(f) > 1 && f[0] == "Z" && f[1] == strconv.Itoa(pid1) {
			out = append(out, s)
		}
	}
	return out
}

// cgroupsNamed lists cgroup directories (any hierarchy, any depth up to 4)
// whose name starts with prefix.
func cgroupsNamed(prefix string) []string {
	var out []string
	for _, pat := range []string{"/sys/fs/cgroup/*/", "/sys/fs/cgroup/*/*/", "/sys/fs/cgroup/*/*/*/", "/sys/fs/cgroup/*/*/*/*/"} {
		dirs, _ := filepath.Glob(pat + prefix + "*")
		out = append(out, dirs...)
	}
	return out
}

// otherProcesses lists processes in this pid namespace other than the test
// binary itself (PID 1).
func otherProcesses() []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		out = append(out, fmt.Sprintf("%d:%s", pid, strings.TrimSpace(string(comm))))
	}
	return out
}

//go:build integration

package driver

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/exeseal"

	"github.com/pantavisor/pv/internal/isolated"
	_ "github.com/pantavisor/pv/runtime/driver/initshim"
	"github.com/pantavisor/pv/runtime/rootfs"
	"github.com/pantavisor/pv/runtime/testrootfs"
	"github.com/pantavisor/pv/spec"
)

func TestMain(m *testing.M) {
	// PV_SEALED_EXE=1 runs the whole package from a sealed copy of the test
	// binary, to compare BenchmarkStartExit with and without it.
	if os.Getenv("PV_SEALED_EXE") == "1" {
		if err := EnsureSealedExe(); err != nil {
			fmt.Fprintln(os.Stderr, "EnsureSealedExe:", err)
			os.Exit(2)
		}
	}
	code := m.Run()
	testrootfs.Cleanup()
	os.Exit(code)
}

func randomSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// testEnv is a driver with a unique cgroup parent and a mounted rootfs,
// checked for leaks when the test ends.
type testEnv struct {
	d     *Driver
	root  *rootfs.Root
	image string
	work  string
}

func newEnv(tb testing.TB) *testEnv {
	tb.Helper()
	return newEnvParent(tb, "pvtest-"+randomSuffix())
}

// newEnvParent is newEnv with the given cgroup parent.
func newEnvParent(tb testing.TB, parent string) *testEnv {
	tb.Helper()
	isolated.Require(tb)
	tmp := tb.TempDir()
	d, err := New(Options{StateRoot: filepath.Join(tmp, "state"), CgroupParent: parent})
	if err != nil {
		tb.Fatal(err)
	}
	e := &testEnv{d: d, image: testrootfs.Squashfs(tb), work: filepath.Join(tmp, "work")}
	e.root, err = rootfs.Mount(rootfs.Options{Image: e.image, WorkBase: e.work})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := e.root.Unmount(); err != nil {
			tb.Errorf("unmount: %v", err)
		}
		if left := cgroupDirs(e.d.CgroupParent()); len(left) > 0 {
			tb.Errorf("cgroup dirs left: %v", left)
			for _, p := range left {
				os.Remove(p)
			}
		}
	})
	return e
}

// cgroupDirs finds directories named parent in every cgroup hierarchy,
// up to a few levels deep (the caller's own cgroup may be nested).
func cgroupDirs(parent string) []string {
	var out []string
	for _, pat := range []string{"*", "*/*", "*/*/*", "*/*/*/*"} {
		m, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", pat, parent))
		out = append(out, m...)
	}
	return out
}

func (e *testEnv) create(tb testing.TB, name string, s *spec.Container, resolve func(string) (string, error)) (*Container, string) {
	tb.Helper()
	log := filepath.Join(tb.TempDir(), "logs", name, "console.log")
	c, err := e.d.Create(Config{Name: name, Spec: s, Rootfs: e.root.Path(), ConsoleLog: log, ResolveSource: resolve})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := c.Destroy(); err != nil {
			tb.Errorf("destroy %s: %v", name, err)
		}
	})
	return c, log
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fileContains(path, s string) func() bool {
	return func() bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), s)
	}
}

// ownCapBnd is this process's bounding set, as /proc/self/status shows it.
func ownCapBnd(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:\t"); ok {
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no CapBnd")
	return 0
}

// (a) What the spec says is what the process sees, from inside.
func TestContainerSeesSpec(t *testing.T) {
	e := newEnv(t)
	vol := t.TempDir()
	data := filepath.Join(vol, "docker--mnt-data")
	os.MkdirAll(data, 0o755)
	os.WriteFile(filepath.Join(data, "hello"), []byte("hello from the host\n"), 0o644)

	script := `echo "FOO=$FOO"; echo "EMPTY=[$EMPTY]"; echo "container=$container"; echo "PWD=$(pwd)"; ` +
		`echo "HOST=$(hostname)"; echo "DATA=$(cat /mnt/data/hello)"; ` +
		`touch /mnt/data/x 2>/dev/null && echo BIND=rw || echo BIND=ro; ` +
		`grep CapEff /proc/self/status; echo "ID=$(id -u):$(id -g)"; ` +
		`touch /proc/sys/kernel/hostname 2>/dev/null && echo PROCSYS=rw || echo PROCSYS=ro; ` +
		`test -c /dev/null && echo DEVNULL=ok; ` +
		// Its own cgroup namespace: every hierarchy's path is "/". With
		// CAP_SYS_ADMIN it mounts its cgroups itself, as under LXC:
		// lxc.mount.auto = cgroup mounts nothing (but on a v2-only host).
		`echo "CGPATHS=$(grep -c -v ':/$' /proc/self/cgroup)"; ` +
		`grep -q ' /sys/fs/cgroup[ /]' /proc/self/mountinfo && echo CGMOUNT=yes || echo CGMOUNT=no; exit 0`
	s := &spec.Container{
		Args:          []string{"/bin/sh", "-c", script},
		Cwd:           "/tmp",
		Env:           []string{"FOO=first", "EMPTY=", "FOO=bar baz"},
		Hostname:      "spec-host",
		MountAuto:     []string{"proc", "sys:rw", "cgroup"},
		NamespaceKeep: []string{"user", "net", "ipc"},
		CapDrop:       []string{"net_raw"},
		DevicesAllow:  []string{"a"},
		TTYMax:        8,
		PTYMax:        1024,
		Mounts: []spec.Mount{
			{Source: "/volumes/spec/docker--mnt-data", Target: "mnt/data", FSType: "none", Options: []string{"bind", "ro", "create=dir"}},
			{Source: "tmpfs", Target: "run", FSType: "tmpfs", Options: []string{"rw", "nodev", "create=dir"}},
			{Source: "/volumes/spec/absent", Target: "mnt/absent", FSType: "none", Options: []string{"bind", "optional"}},
		},
	}
	c, log := e.create(t, "spec", s, PrefixResolver(map[string]string{"/volumes/spec": vol}))
	if _, err := c.NetnsPath(); !errors.Is(err, ErrHostNetwork) {
		t.Errorf("NetnsPath with net kept: %v", err)
	}
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	exit, err := c.Wait()
	if err != nil || !exit.Success() {
		t.Fatalf("exit %v, %v", exit, err)
	}
	out, _ := os.ReadFile(log)
	wantCaps := ownCapBnd(t) &^ (1 << 13) // CAP_NET_RAW = 13
	cgmount := "CGMOUNT=no"
	if cgroups.IsCgroup2UnifiedMode() {
		cgmount = "CGMOUNT=yes"
	}
	want := []string{
		"FOO=bar baz", "EMPTY=[]", "container=lxc", "PWD=/tmp", "HOST=spec-host",
		"DATA=hello from the host", "BIND=ro", fmt.Sprintf("CapEff:\t%016x", wantCaps),
		"ID=0:0", "PROCSYS=ro", "DEVNULL=ok", "CGPATHS=0", cgmount,
	}
	if got := strings.Split(strings.TrimSpace(string(out)), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("console:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if _, err := os.Stat(filepath.Join(data, "x")); err == nil {
		t.Errorf("read-only bind was written")
	}
}

// lxc.mount.auto = cgroup:force mounts the container's cgroups even though
// it could: in its own cgroup namespace it sees its own cgroup as the root
// (v1: per hierarchy; v2: the root), read-only.
func TestCgroupForceMount(t *testing.T) {
	e := newEnv(t)
	script := `f=/sys/fs/cgroup/pids/cgroup.procs; test -e $f || f=/sys/fs/cgroup/cgroup.procs; ` +
		`grep -qx 1 $f && echo CGROUPFS=own; ` +
		`mkdir ${f%/*}/x 2>/dev/null && echo CGROUPFS=rw || echo CGROUPFS=ro; exit 0`
	s := &spec.Container{Args: []string{"/bin/sh", "-c", script}, MountAuto: []string{"proc", "sys:rw", "cgroup:force"},
		NamespaceKeep: []string{"user", "net", "ipc"}}
	c, log := e.create(t, "cgforce", s, nil)
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if exit, err := c.Wait(); err != nil || !exit.Success() {
		t.Fatalf("exit %v, %v", exit, err)
	}
	out, _ := os.ReadFile(log)
	if got := strings.TrimSpace(string(out)); got != "CGROUPFS=own\nCGROUPFS=ro" {
		t.Errorf("console:\n%s\nwant own cgroup, read-only", got)
	}
}

// A non-root init and an appended console log.
func TestContainerUserAndLogAppend(t *testing.T) {
	e := newEnv(t)
	uid, gid := uint32(1000), uint32(100)
	s := &spec.Container{Args: []string{"/bin/sh", "-c", `echo "ID=$(id -u):$(id -g) $(grep CapEff /proc/self/status)"`}, UID: &uid, GID: &gid}
	log := filepath.Join(t.TempDir(), "console.log")
	for i := range 2 {
		c, err := e.d.Create(Config{Name: "user", Spec: s, Rootfs: e.root.Path(), ConsoleLog: log})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Run(); err != nil {
			t.Fatal(err)
		}
		if exit, err := c.Wait(); err != nil || !exit.Success() {
			t.Fatalf("run %d: %v %v", i, exit, err)
		}
		if err := c.Destroy(); err != nil {
			t.Fatal(err)
		}
	}
	out, _ := os.ReadFile(log)
	line := "ID=1000:100 CapEff:\t0000000000000000\n"
	if string(out) != line+line {
		t.Errorf("console = %q, want two lines %q", out, line)
	}
}

// Start/Exec split: the init waits, its netns and cgroups exist, limits
// are applied, and the command only runs after Exec.
func TestStartExecSplit(t *testing.T) {
	e := newEnv(t)
	s := &spec.Container{
		Args: []string{"/bin/sh", "-c", "echo ran; ip -o link | cut -d: -f2 | tr -d ' \\n'; echo"},
		Cgroup: []spec.CgroupSetting{
			{Version: 1, Key: "memory.limit_in_bytes", Value: "64M"},
			{Version: 1, Key: "pids.max", Value: "100"},
			{Version: 1, Key: "cpu.shares", Value: "512"},
		},
	}
	c, log := e.create(t, "split", s, nil)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	ns, err := c.NetnsPath()
	if err != nil {
		t.Fatal(err)
	}
	own, _ := os.Readlink("/proc/self/ns/net")
	theirs, err := os.Readlink(ns)
	if err != nil || theirs == own {
		t.Errorf("netns %s = %q (%v), ours %q", ns, theirs, err, own)
	}
	paths := cgroupPaths(c.lc)
	for file, want := range map[string]string{
		"memory/memory.limit_in_bytes": "67108864",
		"pids/pids.max":                "100",
		"cpu/cpu.shares":               "512",
	} {
		ctrl, name, _ := strings.Cut(file, "/")
		b, err := os.ReadFile(filepath.Join(paths[ctrl], name))
		if got := strings.TrimSpace(string(b)); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", file, got, err, want)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if b, _ := os.ReadFile(log); len(b) != 0 {
		t.Errorf("command ran before Exec: %q", b)
	}
	if err := c.Exec(); err != nil {
		t.Fatal(err)
	}
	if exit, err := c.Wait(); err != nil || !exit.Success() {
		t.Fatalf("exit %v %v", exit, err)
	}
	if b, _ := os.ReadFile(log); string(b) != "ran\nlo\n" {
		t.Errorf("console = %q, want ran and only lo", b)
	}
}

// (b) Exit codes and signals are reported exactly.
func TestExitCodesAndSignals(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	errs := make(chan error, 64)
	for code := range 20 {
		c, _ := e.create(t, fmt.Sprintf("exit%d", code), &spec.Container{Args: []string{"/bin/sh", "-c", fmt.Sprintf("exit %d", code)}}, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := c.Run(); err != nil {
				errs <- err
				return
			}
			exit, err := c.Wait()
			if err != nil || exit.Code != code || exit.Signal != 0 || exit.At.IsZero() {
				errs <- fmt.Errorf("%s: exit %+v, %v; want code %d", c.Name(), exit, err, code)
			}
		}()
	}
	signals := []struct {
		sig     syscall.Signal
		keepPID bool // the init of a pid namespace only dies of SIGKILL
	}{
		{syscall.SIGKILL, false},
		{syscall.SIGTERM, true},
		{syscall.SIGUSR1, true},
		{syscall.SIGHUP, true},
	}
	// A supervisor started under nohup ignores SIGHUP; its containers must
	// not inherit that (the init hand-off gives them default actions).
	signal.Ignore(syscall.SIGHUP)
	defer signal.Reset(syscall.SIGHUP)
	for _, sg := range signals {
		s := &spec.Container{Args: []string{"/bin/sh", "-c", "echo ready; exec sleep 100"}}
		if sg.keepPID {
			s.NamespaceKeep = []string{"pid"}
		}
		c, log := e.create(t, "sig"+strconv.Itoa(int(sg.sig)), s, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(); err != nil {
				errs <- err
				return
			}
			for !fileContains(log, "ready")() {
				time.Sleep(5 * time.Millisecond)
			}
			// The signal is for sleep, not for sh on its way to exec it: a
			// fixed pause was not enough on a loaded machine.
			for deadline := time.Now().Add(10 * time.Second); !isComm(c.Pid(), "sleep") && time.Now().Before(deadline); {
				time.Sleep(2 * time.Millisecond)
			}
			if err := c.Signal(sg.sig); err != nil {
				errs <- err
				return
			}
			exit, err := c.Wait()
			if err != nil || exit.Signal != sg.sig || exit.Code != 128+int(sg.sig) {
				errs <- fmt.Errorf("%s: exit %+v, %v; want signal %d", c.Name(), exit, err, sg.sig)
			}
			if err := c.Signal(syscall.SIGTERM); !errors.Is(err, ErrNotRunning) {
				errs <- fmt.Errorf("%s: signal after exit: %v", c.Name(), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// (c) Stop kills an init that ignores SIGTERM after the timeout, and
// returns early for one that handles it. Wait runs concurrently.
func TestStop(t *testing.T) {
	e := newEnv(t)
	stubborn, _ := e.create(t, "stubborn", &spec.Container{Args: []string{"/bin/sleep", "100"}}, nil)
	if err := stubborn.Run(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan Exit, 1)
	go func() {
		exit, _ := stubborn.Wait()
		waited <- exit
	}()
	const timeout = 300 * time.Millisecond
	start := time.Now()
	exit, err := stubborn.Stop(timeout)
	took := time.Since(start)
	if err != nil || exit.Signal != syscall.SIGKILL || exit.Code != 137 {
		t.Errorf("Stop = %+v, %v; want SIGKILL", exit, err)
	}
	if took < timeout || took > timeout+2*time.Second {
		t.Errorf("Stop took %v, want about %v", took, timeout)
	}
	if w := <-waited; w != exit {
		t.Errorf("concurrent Wait = %+v, Stop = %+v", w, exit)
	}
	if again, err := stubborn.Stop(timeout); err != nil || again != exit {
		t.Errorf("second Stop = %+v, %v", again, err)
	}

	polite, log := e.create(t, "polite", &spec.Container{Args: []string{"/bin/sh", "-c", `trap "exit 7" TERM; echo ready; while :; do sleep 0.05; done`}}, nil)
	if err := polite.Run(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready", fileContains(log, "ready"))
	start = time.Now()
	exit, err = polite.Stop(5 * time.Second)
	if err != nil || exit.Code != 7 || exit.Signal != 0 || time.Since(start) > 2*time.Second {
		t.Errorf("polite Stop = %+v, %v after %v; want code 7 quickly", exit, err, time.Since(start))
	}

	never, _ := e.create(t, "never", &spec.Container{Args: []string{"/bin/true"}}, nil)
	if _, err := never.Stop(time.Second); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Stop before Start: %v", err)
	}
	if _, err := never.Wait(); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Wait before Start: %v", err)
	}
}

// (d) Nothing is left after Destroy and Unmount: mounts, loop devices,
// cgroups, processes, state.
func TestNoLeaks(t *testing.T) {
	isolated.Require(t)
	tmp := t.TempDir()
	parent := "pvtest-" + randomSuffix()
	d, err := New(Options{StateRoot: filepath.Join(tmp, "state"), CgroupParent: parent})
	if err != nil {
		t.Fatal(err)
	}
	img := testrootfs.Squashfs(t)
	work := filepath.Join(tmp, "work")
	var roots []*rootfs.Root
	var ctrs []*Container
	for i, args := range [][]string{
		{"/bin/sh", "-c", "exit 3"},
		{"/bin/sh", "-c", "sleep 100 & sleep 100"}, // still running at Destroy
		{"/bin/sleep", "100"},                      // started, never exec'd
	} {
		name := fmt.Sprintf("leak%d", i)
		r, err := rootfs.Mount(rootfs.Options{Image: img, WorkBase: filepath.Join(work, name),
			Persistence: rootfs.Revision, PersistDir: filepath.Join(tmp, "disks", name)})
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, r)
		t.Cleanup(func() { r.Unmount() }) // after a failure; a no-op otherwise
		c, err := d.Create(Config{Name: name, Spec: &spec.Container{Args: args, Cgroup: []spec.CgroupSetting{{Version: 1, Key: "pids.max", Value: "10"}}}, Rootfs: r.Path()})
		if err != nil {
			t.Fatal(err)
		}
		ctrs = append(ctrs, c)
		t.Cleanup(func() { c.Destroy() })
		if i == 2 {
			err = c.Start()
		} else {
			err = c.Run()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if exit, _ := ctrs[0].Wait(); exit.Code != 3 {
		t.Errorf("exit = %+v", exit)
	}
	if len(cgroupDirs(parent)) == 0 {
		t.Fatalf("no cgroup dirs named %s while running: the check below would prove nothing", parent)
	}
	for _, c := range ctrs {
		if err := c.Destroy(); err != nil {
			t.Error(err)
		}
		if err := c.Destroy(); err != nil {
			t.Errorf("second Destroy: %v", err)
		}
	}
	for _, r := range roots {
		if err := r.Unmount(); err != nil {
			t.Error(err)
		}
	}
	if m := testrootfs.MountsUnder(work); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	waitFor(t, "loop devices to clear", func() bool { return len(testrootfs.LoopsBackedBy(img)) == 0 })
	if left := cgroupDirs(parent); len(left) > 0 {
		t.Errorf("cgroup dirs left: %v", left)
		for _, p := range left {
			os.Remove(p)
		}
	}
	if procs := otherProcesses(); len(procs) > 0 {
		t.Errorf("processes left: %v", procs)
	}
	if ents, _ := os.ReadDir(filepath.Join(tmp, "state")); len(ents) > 0 {
		t.Errorf("state left: %v", ents)
	}
}

// otherProcesses lists every process in our pid namespace but ourselves.
func otherProcesses() []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		out = append(out, strings.TrimSpace(string(b)))
	}
	return out
}

// A container left behind by a crash (state present, process gone) does
// not block creating it again.
func TestCreateReplacesStale(t *testing.T) {
	e := newEnv(t)
	c, _ := e.create(t, "stale", &spec.Container{Args: []string{"/bin/true"}}, nil)
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	c.Wait()
	// No Destroy: simulate a supervisor that lost the handle.
	c2, err := e.d.Create(Config{Name: "stale", Spec: &spec.Container{Args: []string{"/bin/true"}}, Rootfs: e.root.Path()})
	if err != nil {
		t.Fatalf("re-create over stale state: %v", err)
	}
	if err := c2.Destroy(); err != nil {
		t.Fatal(err)
	}
}

// A supervisor that died between Create and the start left a state
// directory with no state in it: the next Create of that name removes it.
func TestCreateReplacesHalfCreated(t *testing.T) {
	e := newEnv(t)
	if _, err := e.d.Create(Config{Name: "half", Spec: &spec.Container{Args: []string{"/bin/true"}}, Rootfs: e.root.Path()}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.d.StateRoot(), "half")); err != nil {
		t.Fatalf("no state directory after Create: %v", err)
	}
	// No Start, no Destroy: the handle is lost with its supervisor.
	c, err := e.d.Create(Config{Name: "half", Spec: &spec.Container{Args: []string{"/bin/true"}}, Rootfs: e.root.Path()})
	if err != nil {
		t.Fatalf("re-create over a half-created container: %v", err)
	}
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if exit, err := c.Wait(); err != nil || !exit.Success() {
		t.Fatalf("exit %+v %v", exit, err)
	}
	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkStartExit measures create + run + wait + destroy of a container
// that exits at once, on an overlay over squashfs: with a minimal spec, and
// with what upstream's template asks of every container (proc, sys,
// cgroup, a /run tmpfs, ttys). Run it with and without PV_SEALED_EXE=1 to
// compare libcontainer's per-start overlay with a binary sealed once.
func BenchmarkStartExit(b *testing.B) {
	e := newEnv(b)
	b.Logf("sealed exe: %v", exeseal.IsSelfExeCloned())
	keep := []string{"user", "net", "ipc"}
	variants := []struct {
		name string
		spec *spec.Container
	}{
		{"minimal", &spec.Container{Args: []string{"/bin/true"}, NamespaceKeep: keep}},
		{"upstream", &spec.Container{
			Args: []string{"/bin/true"}, NamespaceKeep: keep,
			MountAuto: []string{"proc", "sys:rw", "cgroup"}, DevicesAllow: []string{"a"}, TTYMax: 8, PTYMax: 1024,
			Mounts: []spec.Mount{{Source: "tmpfs", Target: "run", FSType: "tmpfs", Options: []string{"rw", "nodev", "relatime", "mode=755"}}},
		}},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				c, err := e.d.Create(Config{Name: v.name + strconv.Itoa(i), Spec: v.spec, Rootfs: e.root.Path()})
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Run(); err != nil {
					b.Fatal(err)
				}
				if exit, err := c.Wait(); err != nil || !exit.Success() {
					b.Fatal(exit, err)
				}
				if err := c.Destroy(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The /dev the driver makes before the start is the one libcontainer's
// init would make: the same nodes, modes, owners and links, the same
// mounts with the same options, and the init's null streams on the
// container's own /dev/null. The driver's mount table is back to what it
// was once the container started.
func TestDevTreeAsLibcontainer(t *testing.T) {
	e := newEnv(t)
	// Everything in /dev, one line each; the /dev mounts as mountinfo
	// shows them (mount point, mount options, type, source, super
	// options); where the streams point.
	script := `cd /dev && for f in * pts/* shm/*; do [ -e "$f" -o -L "$f" ] && stat -c '%n %F %a %u:%g %t:%T %N' "$f"; done; ` +
		`awk '$5 ~ /^\/dev/ { for (i = 7; $i != "-"; i++) ; print $5, $6, $(i+1), $(i+2), $(i+3) }' /proc/self/mountinfo; ` +
		`for fd in 0 3 4; do [ "$(stat -L -c %d:%i /proc/self/fd/$fd)" = "$(stat -c %d:%i /dev/null)" ] && echo "fd $fd: own /dev/null"; done; ` +
		`echo x > /dev/shm/w && echo shm writable`
	// The output goes to a file in the rootfs: the streams are /dev/null
	// (no console log), which the init must see as the container's own.
	// Descriptors 3 and 4 keep the init's stdout and stderr.
	s := &spec.Container{
		Args: []string{"/bin/sh", "-c", "exec 3>&1 4>&2; (" + script + ") >/tmp/dev.out 2>&1"}, PTYMax: 64,
		MountAuto: []string{"proc", "sys:rw"}, NamespaceKeep: []string{"net"},
	}
	run := func(name string, initMakesDev bool) string {
		e.d.initMakesDev = initMakesDev
		defer func() { e.d.initMakesDev = false }()
		mountsBefore := testrootfs.MountsUnder("/")
		c, err := e.d.Create(Config{Name: name, Spec: s, Rootfs: e.root.Path()})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := c.Destroy(); err != nil {
				t.Errorf("destroy %s: %v", name, err)
			}
		}()
		if (c.dev == nil) != initMakesDev {
			t.Fatalf("%s: tree %v, initMakesDev %v", name, c.dev, initMakesDev)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		if got := testrootfs.MountsUnder("/"); strings.Join(got, "\n") != strings.Join(mountsBefore, "\n") {
			t.Errorf("%s: mounts after start differ from before:\n%v\nbefore:\n%v", name, got, mountsBefore)
		}
		if err := c.Exec(); err != nil {
			t.Fatal(err)
		}
		if exit, err := c.Wait(); err != nil || !exit.Success() {
			t.Fatalf("%s: exit %v %v", name, exit, err)
		}
		out, err := os.ReadFile(filepath.Join(e.root.Path(), "tmp", "dev.out"))
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	theirs := run("libcontainer-dev", true)
	ours := run("driver-dev", false)
	for _, want := range []string{"null character special file 666 0:0 1:3", "ptmx symbolic link", "/dev/pts rw,nosuid,noexec,relatime devpts devpts", "tmpfs shm rw", "/dev/mqueue", "fd 0: own /dev/null", "fd 3: own /dev/null", "fd 4: own /dev/null", "shm writable"} {
		if !strings.Contains(theirs, want) {
			t.Errorf("libcontainer's /dev lacks %q; the comparison is void:\n%s", want, theirs)
		}
	}
	if ours != theirs {
		t.Errorf("/dev differs from libcontainer's:\n%s\nlibcontainer's:\n%s", ours, theirs)
	}
	if _, err := os.Stat(e.d.devDir("driver-dev")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tree directory left: %v", err)
	}
}

// A /dev tree left mounted by an earlier start is cleared, not an error.
func TestDevTreeReplacesStale(t *testing.T) {
	e := newEnv(t)
	c, _ := e.create(t, "stale-dev", &spec.Container{Args: []string{"/bin/true"}}, nil)
	dir := e.d.devDir("stale-dev")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if exit, err := c.Wait(); err != nil || !exit.Success() {
		t.Fatalf("exit %v %v", exit, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tree directory left: %v", err)
	}
	if m := testrootfs.MountsUnder(dir); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
}

// Close removes the parent cgroups the driver made once its containers are
// gone, and names a parent it cannot remove because a child cgroup is
// still in it; once that child is gone, Close succeeds.
func TestCloseRemovesParents(t *testing.T) {
	e := newEnv(t)
	c, _ := e.create(t, "c", &spec.Container{Args: []string{"/bin/true"}}, nil)
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	parents := cgroupDirs(e.d.CgroupParent())
	if len(parents) == 0 {
		t.Fatal("no parent cgroups while the container exists: the check below would prove nothing")
	}
	// A child cgroup the driver did not make keeps its parent busy
	// whatever the kernel does: Destroy leaves that parent, and Close
	// must say so at once.
	stray := filepath.Join(parents[0], "stray")
	if err := os.Mkdir(stray, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := e.d.Close()
	if el := time.Since(start); el > closeWait/2 {
		t.Errorf("Close waited %v for a parent that cannot go", el)
	}
	if err == nil || !strings.Contains(err.Error(), parents[0]) {
		t.Fatalf("Close with %s in place: %v, want an error naming %s", stray, err, parents[0])
	}
	if err := os.Remove(stray); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if left := cgroupDirs(e.d.CgroupParent()); len(left) > 0 {
		t.Errorf("parents left after Close: %v", left)
	}
}

// A start that fails inside the init (after libcontainer made the
// container's cgroups) leaves no parent cgroup behind once the container
// is destroyed and the driver closed, even when no container ever started.
func TestFailedStartLeavesNoParents(t *testing.T) {
	e := newEnv(t)
	s := &spec.Container{Args: []string{"/bin/true"},
		Mounts: []spec.Mount{{Source: "tmpfs", Target: "run", FSType: "tmpfs", Options: []string{"no-such-option=1"}}}}
	c, _ := e.create(t, "bad", s, nil)
	if err := c.Start(); err == nil {
		t.Fatal("a start with a tmpfs option the kernel refuses succeeded")
	}
	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if left := cgroupDirs(e.d.CgroupParent()); len(left) > 0 {
		t.Errorf("parents left after a failed start: %v", left)
	}
}

// isComm says whether process pid runs a program named name.
func isComm(pid int, name string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(data)) == name
}

// lxc.idmap: the container runs in a user namespace of its own. Inside, its
// init is root; on the host it is the mapped id. Its mounts, a file bind
// in a directory of the image it cannot write (as /pantavisor/pv-ctrl),
// that mapped root.
func TestUserNamespace(t *testing.T) {
	e := newEnv(t)
	sock := filepath.Join(t.TempDir(), "ctrl")
	if err := os.WriteFile(sock, []byte("ctrl\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &spec.Container{
		Args:      []string{"/bin/sh", "-c", `echo "ID=$(id -u):$(id -g)"; echo "CTRL=$(cat /etc/pv/ctrl)"; touch /x && echo ROOTW=ok; exec sleep 100`},
		MountAuto: []string{"proc", "sys"},
		UIDMap:    []spec.IDMap{{ContainerID: 0, HostID: 100000, Count: 65536}},
		GIDMap:    []spec.IDMap{{ContainerID: 0, HostID: 100000, Count: 65536}},
		Mounts: []spec.Mount{
			{Source: sock, Target: "etc/pv/ctrl", FSType: "none", Options: []string{"bind", "create=file"}},
		},
	}
	// The mapped root must reach its rootfs, as under LXC: the test's
	// temporary directories are 0700 where a device's work tmpfs is 0711.
	for d := e.root.Path(); d != "/"; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o011 != 0o011 {
			if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
				t.Fatal(err)
			}
		}
	}
	c, log := e.create(t, "userns", s, nil)
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the console", fileContains(log, "ROOTW="))
	out, _ := os.ReadFile(log)
	for _, w := range []string{"ID=0:0", "CTRL=ctrl", "ROOTW=ok"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("console lacks %q:\n%s", w, out)
		}
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(st), "Uid:\t100000\t100000\t100000\t100000") || !strings.Contains(string(st), "Gid:\t100000\t100000\t100000\t100000") {
		t.Errorf("init is not 100000:100000 on the host:\n%s", st)
	}
	c.Signal(syscall.SIGKILL)
	c.Wait()
}

// A container's fork bomb takes the tasks the supervisor shares with it up
// to the containers' parent cgroup's limit only: a process beside the
// containers (the supervisor) can still fork. The shared limit here is a
// cgroup the test makes with pids.max 300, never a host-wide one.
func TestForkBombLeavesSupervisorRoom(t *testing.T) {
	isolated.Require(t)
	hier := "/sys/fs/cgroup/pids"
	if cgroups.IsCgroup2UnifiedMode() {
		hier = "/sys/fs/cgroup"
	}
	shared := "pvlimit-" + randomSuffix()
	sharedDir := filepath.Join(hier, shared)
	if err := os.Mkdir(sharedDir, 0o755); err != nil {
		t.Skipf("no pids cgroup to bound the test: %v", err)
	}
	t.Cleanup(func() {
		// The driver removes it with the empty parents.
		if err := rmdirCgroup(sharedDir, time.Now().Add(10*time.Second)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove %s: %v", sharedDir, err)
		}
	})
	if err := os.WriteFile(filepath.Join(sharedDir, "pids.max"), []byte("300"), 0o644); err != nil {
		t.Skipf("no pids controller to bound the test: %v", err)
	}
	e := newEnvParent(t, "/"+shared+"/pvtest-"+randomSuffix())
	bomb := `sh -c 'while :; do sleep 1000 & done' 2>/dev/null; echo full; exec sleep 1000`
	c, log := e.create(t, "bomb", &spec.Container{Args: []string{"/bin/sh", "-c", bomb}}, nil)
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for b, _ := os.ReadFile(log); string(b) != "full\n"; b, _ = os.ReadFile(log) {
		if time.Now().After(deadline) {
			t.Fatalf("the fork bomb never filled its limit; console %q", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A process moved into the shared cgroup (moving ignores pids.max)
	// forks there once told to: into a leaf of its own beside the
	// containers' parent, as cgroup v2 allows no process in a cgroup
	// with children.
	beside := filepath.Join(sharedDir, "beside")
	if err := os.Mkdir(beside, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rmdirCgroup(beside, time.Now().Add(10*time.Second)); err != nil {
			t.Errorf("remove %s: %v", beside, err)
		}
	})
	cmd := exec.Command("/bin/sh", "-c", "read x; /bin/true && echo forked")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(beside, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	in.Write([]byte("\n"))
	in.Close()
	cmd.Wait()
	if got := strings.TrimSpace(out.String()); got != "forked" {
		cur, _ := os.ReadFile(filepath.Join(sharedDir, "pids.current"))
		t.Errorf("a process beside the containers could not fork: %q (tasks in the shared cgroup: %s of 300)", got, strings.TrimSpace(string(cur)))
	}
}

// A container's init is cloned from the supervisor, whose oom_score_adj
// is not the container's to keep (the supervisor's is -999 on a device):
// the container starts with the kernel's default, 0. Here the test raises
// its own (lowering it needs CAP_SYS_RESOURCE) and sets it back after.
func TestContainerOOMScoreAdjIsDefault(t *testing.T) {
	e := newEnv(t)
	const self = "/proc/self/oom_score_adj"
	old, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(self, []byte("300"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(self, old, 0); err != nil {
			t.Errorf("restore oom_score_adj %s: %v", strings.TrimSpace(string(old)), err)
		}
	})
	c, log := e.create(t, "oom", &spec.Container{Args: []string{"/bin/cat", "/proc/self/oom_score_adj"}}, nil)
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if exit, err := c.Wait(); err != nil || !exit.Success() {
		t.Fatalf("exit %v, %v", exit, err)
	}
	if out, _ := os.ReadFile(log); strings.TrimSpace(string(out)) != "0" {
		t.Errorf("container's oom_score_adj = %q, want 0", out)
	}
}

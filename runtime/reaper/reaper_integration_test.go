//go:build integration

package reaper_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/internal/stuckdev"
	"github.com/pantavisor/pv/runtime/driver"
	_ "github.com/pantavisor/pv/runtime/driver/initshim"
	"github.com/pantavisor/pv/runtime/reaper"
	"github.com/pantavisor/pv/runtime/rootfs"
	"github.com/pantavisor/pv/runtime/testrootfs"
	"github.com/pantavisor/pv/spec"
)

func TestMain(m *testing.M) {
	// The supervisor of an embedded PID 1 (TestEmbeddedPID1Reboots):
	// `pantavisor embedded`, which exits with the code asked for.
	if reaper.IsChild() && len(os.Args) == 2 && os.Args[1] == reaper.EmbeddedCmd {
		code, _ := strconv.Atoi(os.Getenv(embeddedExitEnv))
		if path := os.Getenv(embeddedDirtyEnv); path != "" {
			// Left in the page cache for PID 1's sync: the file's
			// pages are cached, so that writing them reads nothing
			// from a device whose reads are held too.
			if err := stuckdev.Overwrite(path, dirtySize, false); err != nil {
				fmt.Fprintln(os.Stderr, "dirty the page cache:", err)
				os.Exit(1)
			}
		}
		os.Exit(code)
	}
	code := m.Run()
	testrootfs.Cleanup()
	os.Exit(code)
}

// underReaper starts this test binary as PID 1 of a new pid namespace with
// reaper.PID1Env set: the C reaper runs it again as the supervisor, where
// only the named test is selected.
func underReaper(t *testing.T, test string) *exec.Cmd {
	t.Helper()
	isolated.Require(t)
	if reaper.IsChild() {
		t.Skip("parent-side test")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), reaper.PID1Env+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
	cmd.Stdout, cmd.Stderr = &testWriter{t: t}, &testWriter{t: t}
	return cmd
}

// runSupervisor runs test under the reaper and returns PID 1's exit code.
func runSupervisor(t *testing.T, test string) int {
	t.Helper()
	cmd := underReaper(t, test)
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode()
}

// supervisorPasses runs test under the reaper and fails unless PID 1
// exits 0 (the test passed in the supervisor).
func supervisorPasses(t *testing.T, test string) {
	t.Helper()
	if code := runSupervisor(t, test); code != 0 {
		t.Fatalf("supervisor exit code %d", code)
	}
}

// testWriter passes a child's output to the test log.
type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}

func childOnly(t *testing.T) {
	if !reaper.IsChild() {
		t.Skip("runs as the supervisor child of another test")
	}
	for _, env := range []string{reaper.ChildEnv, reaper.PID1Env} {
		if v, ok := os.LookupEnv(env); ok {
			t.Errorf("%s=%s in the supervisor's environment", env, v)
		}
	}
}

// (e) Orphans from plain commands and from a container are reaped by PID 1
// while the supervisor's own waits (os/exec, container inits) keep their
// exact statuses.
func TestReaperNoZombiesNoStolenStatus(t *testing.T) {
	supervisorPasses(t, "TestSupervisorWorkload")
	if z := testrootfs.Zombies(); len(z) > 0 {
		t.Errorf("zombies left: %v", z)
	}
}

func TestSupervisorWorkload(t *testing.T) {
	childOnly(t)
	if os.Getpid() != 2 || os.Getppid() != 1 {
		t.Fatalf("supervisor is pid %d, child of %d: want 2, child of the reaper", os.Getpid(), os.Getppid())
	}
	ownProc(t)
	tmp := t.TempDir()
	suffix := make([]byte, 4)
	rand.Read(suffix)
	d, err := driver.New(driver.Options{StateRoot: filepath.Join(tmp, "state"), CgroupParent: "pvtest-" + hex.EncodeToString(suffix)})
	if err != nil {
		t.Fatal(err)
	}
	root, err := rootfs.Mount(rootfs.Options{Image: testrootfs.Squashfs(t), WorkBase: filepath.Join(tmp, "work")})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Unmount()

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 8 {
		wg.Add(3)
		// A command that leaves an orphan behind, and its exact status.
		go func() {
			defer wg.Done()
			err := exec.Command("sh", "-c", "sleep 0.2 & exit 0").Run()
			if err != nil {
				errs <- fmt.Errorf("orphaning command: %w", err)
			}
		}()
		go func() {
			defer wg.Done()
			err := exec.Command("sh", "-c", fmt.Sprintf("exit %d", 10+i)).Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 10+i {
				errs <- fmt.Errorf("command exit %d: got %v", 10+i, err)
			}
		}()
		// A container sharing our pid namespace whose non-init process
		// double-forks: the grandchild reparents to PID 1, the reaper.
		go func() {
			defer wg.Done()
			s := &spec.Container{Args: []string{"/bin/sh", "-c", fmt.Sprintf("(sleep 0.3 &); exit %d", 20+i)}}
			if i%2 == 0 {
				s.NamespaceKeep = []string{"pid"}
			}
			c, err := d.Create(driver.Config{Name: fmt.Sprintf("orph%d", i), Spec: s, Rootfs: root.Path()})
			if err != nil {
				errs <- err
				return
			}
			defer func() {
				if err := c.Destroy(); err != nil {
					errs <- err
				}
			}()
			if err := c.Run(); err != nil {
				errs <- err
				return
			}
			exit, err := c.Wait()
			if err != nil || exit.Code != 20+i || exit.Signal != 0 {
				errs <- fmt.Errorf("container exit %d: got %+v, %v", 20+i, exit, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Give the orphans time to finish and PID 1 time to reap them.
	deadline := time.Now().Add(3 * time.Second)
	for {
		z := testrootfs.Zombies()
		if len(z) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("zombies: %v", z)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(400 * time.Millisecond) // every sleep has exited by now
	if z := testrootfs.Zombies(); len(z) > 0 {
		t.Errorf("zombies after the orphans exited: %v", z)
	}
}

// ownProc mounts a /proc of the new pid namespace, as the appengine
// supervisor does: libcontainer looks its children up there, and PID 1
// reads the start times of the orphans it reaps there.
func ownProc(t *testing.T) {
	t.Helper()
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		t.Fatal(err)
	}
}

// The supervisor's exit code comes back from Run.
func TestReaperReturnsExitCode(t *testing.T) {
	if code := runSupervisor(t, "TestSupervisorExit3"); code != 3 {
		t.Fatalf("code = %d, want 3", code)
	}
}

func TestSupervisorExit3(t *testing.T) {
	childOnly(t)
	os.Exit(3)
}

// A signal sent to PID 1 (from outside its namespace, as the appengine
// host stage does) reaches the supervisor.
func TestReaperForwardsSignals(t *testing.T) {
	ready := filepath.Join(os.TempDir(), "pv-reaper-ready")
	os.Remove(ready)
	cmd := underReaper(t, "TestSupervisorWaitsForUSR1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		cmd.Wait()
		done <- cmd.ProcessState.ExitCode()
	}()
	// The child tells us it is ready by creating this file.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("supervisor exited early: %d", code)
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("supervisor never ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	os.Remove(ready)
	cmd.Process.Signal(syscall.SIGUSR1) // the reaper, PID 1 of its namespace
	select {
	case code := <-done:
		if code != 42 {
			t.Fatalf("code = %d, want 42", code)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("supervisor did not get SIGUSR1")
	}
}

// A supervisor killed by a signal before it is up (it has not handed its
// control socket to PID 1) left a boot half done: not a start-up failure
// to report as its exit code, nor one to re-adopt; PID 1 kills what is
// left and exits with ExitReboot (the host stage boots the device again).
// An exit code before it is up is still reported as it is
// (TestReaperReturnsExitCode).
func TestReaperRebootsOnSignalDeathWhileStarting(t *testing.T) {
	if code := runSupervisor(t, "TestSupervisorKillsItself"); code != reaper.ExitReboot {
		t.Fatalf("code = %d, want %d (ExitReboot)", code, reaper.ExitReboot)
	}
}

func TestSupervisorKillsItself(t *testing.T) {
	childOnly(t)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	time.Sleep(10 * time.Second)
}

// A supervisor that is up and killed by a signal has crashed: PID 1
// starts it again, telling it its generation, and after CrashLimit crashes
// within CrashWindow it gives up, kills what is left and exits with
// ExitReboot (in appengine mode the host stage then boots the device
// again).
func TestReaperRestartsCrashedSupervisor(t *testing.T) {
	gens := filepath.Join(t.TempDir(), "generations")
	t.Setenv("PV_TEST_GENERATIONS", gens)
	if code := runSupervisor(t, "TestSupervisorUpKillsItself"); code != reaper.ExitReboot {
		t.Fatalf("code = %d, want %d", code, reaper.ExitReboot)
	}
	data, _ := os.ReadFile(gens)
	if got, want := string(data), "0 1 2 "; got != want {
		t.Errorf("generations started: %q, want %q", got, want)
	}
}

func TestSupervisorUpKillsItself(t *testing.T) {
	childOnly(t)
	recordGeneration(t)
	if reaper.Generation() == 0 {
		comeUp(t)
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	time.Sleep(10 * time.Second)
}

// The supervisor learns from PID 1 how an orphan ended: a process whose
// parent died is PID 1's child, as a container's init is once its
// supervisor died.
func TestReaperSendsOrphanExits(t *testing.T) {
	supervisorPasses(t, "TestSupervisorOrphanExit")
}

func TestSupervisorOrphanExit(t *testing.T) {
	exits := supervisorExits(t)
	// The orphan exits 7 a moment later, reaped by PID 1.
	pid := orphan(t, "(sleep 0.2; exit 7)")
	ws, ok := exits.Wait(pid, startTime(t, pid), 5*time.Second)
	if !ok {
		t.Fatalf("no exit status of orphan %d from PID 1", pid)
	}
	if !ws.Exited() || ws.ExitStatus() != 7 {
		t.Errorf("orphan %d: status %v, want exit 7", pid, ws)
	}
}

// supervisorExits is the start of a supervisor's side of a test: it
// mounts its own /proc, which PID 1 reads the start times of orphans in,
// and opens PID 1's exit channel.
func supervisorExits(t *testing.T) *reaper.Exits {
	t.Helper()
	childOnly(t)
	ownProc(t)
	exits, err := reaper.OpenExits(slog.Default())
	if err != nil || exits == nil {
		t.Fatalf("no exit channel: %v", err)
	}
	t.Cleanup(func() { exits.Close() })
	return exits
}

// orphan runs a shell that starts script's last command in the
// background and exits at once: that child, orphaned, is PID 1's. It
// returns the child's pid. The child's output goes nowhere, so that the
// shell's pipes close when it exits.
func orphan(t *testing.T, script string) int {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-c", script+" >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("%s: pid %q: %v", script, out, err)
	}
	return pid
}

// startTime returns field 22 of /proc/<pid>/stat of a live process.
func startTime(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("start time of %d: %v", pid, err)
	}
	i := bytes.LastIndexByte(b, ')') // the end of the name, field 2
	if i < 0 {
		t.Fatalf("start time of %d: stat %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:])) // from field 3
	if len(f) < 20 {
		t.Fatalf("start time of %d: stat %q", pid, b)
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		t.Fatalf("start time of %d: %v", pid, err)
	}
	return v
}

// After a pid wrap, PID 1's record of an earlier process is not taken for
// a later one with its pid: a live process is not taken as exited, and
// its death by SIGKILL is reported as such, not as the earlier exit 0.
// The pid is reused on purpose (ns_last_pid), as a wrap would.
func TestReaperExitRecordIsTheProcesssOwn(t *testing.T) {
	supervisorPasses(t, "TestSupervisorPidReused")
}

func TestSupervisorPidReused(t *testing.T) {
	exits := supervisorExits(t)
	// The earlier process: an orphan that exits 0, reaped by PID 1.
	pid := orphan(t, "(sleep 0.3; exit 0)")
	first := startTime(t, pid)
	if ws, ok := exits.Wait(pid, first, 5*time.Second); !ok || !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("orphan %d started at %d: %v, %v; want exit 0 from PID 1", pid, first, ws, ok)
	}
	// The later one: an orphan given the same pid.
	second := reusePid(t, pid)
	defer syscall.Kill(pid, syscall.SIGKILL)
	if second == first {
		t.Fatalf("pid %d reused with the same start time %d", pid, first)
	}
	t.Logf("pid %d: exited 0 when started at %d, runs again since %d", pid, first, second)
	if ws, ok := exits.Wait(pid, second, 300*time.Millisecond); ok {
		t.Fatalf("live process %d (started at %d) taken as exited with %v: the record of the earlier process (started at %d)", pid, second, ws, first)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ws, ok := exits.Wait(pid, second, 5*time.Second)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("process %d started at %d: %v, %v; want killed by SIGKILL", pid, second, ws, ok)
	}
}

// reusePid starts an orphan (PID 1's child) with pid, which must be
// free, and returns its start time. The shell that forks it sets the
// namespace's last pid just before: only a thread of this process made
// in between takes the pid, and then it tries again.
func reusePid(t *testing.T, pid int) uint64 {
	t.Helper()
	script := fmt.Sprintf("echo %d > /proc/sys/kernel/ns_last_pid; sleep 30", pid-1)
	for try := 0; try < 10; try++ {
		got := orphan(t, script)
		if got == pid {
			return startTime(t, pid)
		}
		syscall.Kill(got, syscall.SIGKILL)
	}
	t.Fatalf("pid %d not reused in 10 tries", pid)
	return 0
}

func TestSupervisorWaitsForUSR1(t *testing.T) {
	childOnly(t)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	os.WriteFile(filepath.Join(os.TempDir(), "pv-reaper-ready"), nil, 0o644)
	select {
	case <-ch:
		os.Exit(42)
	case <-time.After(10 * time.Second):
		t.Fatal("no SIGUSR1")
	}
}

// embeddedExitEnv is the exit code of the supervisor an embedded PID 1 of
// TestEmbeddedPID1Reboots runs.
const embeddedExitEnv = "_PV_TEST_EMBEDDED_EXIT"

// embeddedDirtyEnv names a file that supervisor writes over before it
// exits, leaving its pages dirty (stuckdev.Overwrite).
const embeddedDirtyEnv = "_PV_TEST_EMBEDDED_DIRTY"

const dirtySize = 4 << 20

// A disk that stops answering as the device stops (its writes never
// complete) does not keep PID 1 from rebooting: its sync of the page
// cache, which never ends, is left behind. Before, PID 1 synced by itself
// and hung there for good, in a task no signal ends: with no watchdog,
// or one in its startup mode, the device stayed down until its power was
// cut.
func TestEmbeddedPID1RebootsWithAHungSync(t *testing.T) {
	isolated.Require(t)
	if reaper.IsChild() {
		t.Skip("parent-side test")
	}
	d, mnt := stuckdev.MountedExt4(t)
	dirty := filepath.Join(mnt, "dirty")
	if err := stuckdev.Overwrite(dirty, dirtySize, true); err != nil { // allocated, written back, cached
		t.Fatal(err)
	}
	d.Suspend()
	cmd := exec.Command(os.Args[0])
	cmd.Args = []string{"init"}
	cmd.Env = append(os.Environ(), embeddedExitEnv+"="+strconv.Itoa(reaper.ExitReboot),
		embeddedDirtyEnv+"="+dirty, "_PV_TEST_SYNC_WAIT=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
	p := startPID1(t, cmd)
	t.Cleanup(d.Resume) // before PID 1 is waited for: its namespace's end waits for the sync
	p.waitFor(t, "write-back has not ended")
	// PID 1 rebooted its pid namespace: the kernel ends it, waiting for
	// every task in it (a machine's reboot does not), the stuck sync
	// included. So PID 1 is seen leaving, and ends once the disk answers.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		stack, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stack", p.cmd.Process.Pid))
		if bytes.Contains(stack, []byte("zap_pid_ns_processes")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PID 1 did not reboot after its sync was left behind; its stack:\n%s\n%s", stack, p.String())
		}
	}
	if d.Held() == 0 {
		t.Error("no write of the storage held: the sync was not stuck")
	}
	d.Resume()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("PID 1 still runs 20 s after the disk answered again:\n%s", p.String())
	}
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGHUP {
		t.Errorf("PID 1 ended with %v, want its reboot (SIGHUP)\n%s", ws, p.String())
	}
	if !strings.Contains(p.String(), "pantavisor: rebooting\n") {
		t.Errorf("PID 1 did not say it reboots:\n%s", p.String())
	}
}

// PID 1 of a device ends as its supervisor asks: a reboot, a reboot with
// "0 tryboot" (rpiab's firmware tries the other partition once), a
// power-off. PID 1 of a pid namespace that calls reboot(2) ends by a
// signal instead, the one the kernel reports for the command
// (pid_namespaces(7)): SIGHUP for a restart, RESTART2 included, and SIGINT
// for a power-off. The command's string is not passed on there; that it
// is "0 tryboot" is what PID 1 says before it reboots.
func TestEmbeddedPID1Reboots(t *testing.T) {
	isolated.Require(t)
	if reaper.IsChild() {
		t.Skip("parent-side test")
	}
	tests := []struct {
		code   int
		signal syscall.Signal
		says   string
	}{
		{reaper.ExitReboot, syscall.SIGHUP, "pantavisor: rebooting\n"},
		{reaper.ExitRebootTryboot, syscall.SIGHUP, `pantavisor: rebooting with "0 tryboot" to try the update`},
		{reaper.ExitPoweroff, syscall.SIGINT, "pantavisor: powering off\n"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.code), func(t *testing.T) {
			// argv[0] "init" with no arguments: the kernel's /init.
			cmd := exec.Command(os.Args[0])
			cmd.Args = []string{"init"}
			cmd.Env = append(os.Environ(), embeddedExitEnv+"="+strconv.Itoa(tt.code))
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("PID 1 ended with %v: want it killed by the kernel's reboot of its namespace\n%s", err, out.String())
			}
			ws := ee.Sys().(syscall.WaitStatus)
			if !ws.Signaled() || ws.Signal() != tt.signal {
				t.Errorf("PID 1 ended with %v, want signal %v\n%s", ws, tt.signal, out.String())
			}
			if !strings.Contains(out.String(), tt.says) {
				t.Errorf("PID 1 did not say %q:\n%s", tt.says, out.String())
			}
			if strings.Contains(out.String(), "refused") {
				t.Errorf("the reboot was refused:\n%s", out.String())
			}
		})
	}
}

// pid1 is a PID 1 the test started, its output kept to be searched while
// it runs (and passed to the test log).
type pid1 struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	b    strings.Builder
	done chan struct{} // closed once cmd ended
}

func startPID1(t *testing.T, cmd *exec.Cmd) *pid1 {
	t.Helper()
	p := &pid1{t: t, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *pid1) Write(b []byte) (int, error) {
	p.mu.Lock()
	p.b.Write(b)
	p.mu.Unlock()
	p.t.Logf("%s", b)
	return len(b), nil
}

func (p *pid1) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.b.String()
}

// waitFor waits for s in PID 1's output; the test fails if PID 1 ends
// first, or after a minute.
func (p *pid1) waitFor(t *testing.T, s string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(p.String(), s); {
		select {
		case <-p.done:
			t.Fatalf("PID 1 exited %d before it said %q", p.cmd.ProcessState.ExitCode(), s)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("PID 1 never said %q", s)
		}
	}
}

// exited waits for PID 1's end and returns its exit code.
func (p *pid1) exited(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatal("PID 1 still runs after a minute")
	}
	return p.cmd.ProcessState.ExitCode()
}

// pidsCgroup makes a pids cgroup for the test and removes it at its end;
// it skips the test where there is none.
func pidsCgroup(t *testing.T) string {
	t.Helper()
	hier := "/sys/fs/cgroup/pids"
	if cgroups.IsCgroup2UnifiedMode() {
		hier = "/sys/fs/cgroup"
	}
	b := make([]byte, 4)
	rand.Read(b)
	dir := filepath.Join(hier, "pvreaper-"+hex.EncodeToString(b))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("no pids cgroup for the test: %v", err)
	}
	t.Cleanup(func() {
		// PID 1 and what it forked are gone: the cgroup empties.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			err := unix.Rmdir(dir)
			if err == nil || !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				if err != nil {
					t.Errorf("remove %s: %v", dir, err)
				}
				return
			}
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "pids.max"), []byte("max"), 0o644); err != nil {
		t.Skipf("no pids controller for the test: %v", err)
	}
	return dir
}

// A fork of the supervisor that the kernel refuses for want of tasks (a
// pids limit, here the cgroup's; on a device threads-max or pid_max filled
// by containers) is tried again until the tasks come back. Before, PID 1
// exited at boot (a device's kernel panics) and, after a crash, rebooted
// at once, killing every container.
func TestReaperRetriesARefusedFork(t *testing.T) {
	isolated.Require(t)
	if reaper.IsChild() {
		t.Skip("parent-side test")
	}
	limit := func(t *testing.T, cg, v string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(cg, "pids.max"), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, p *pid1, gens, want string) {
		t.Helper()
		if code := p.exited(t); code != 0 {
			t.Errorf("PID 1 exited %d, want 0 (the supervisor's own exit)", code)
		}
		if data, _ := os.ReadFile(gens); string(data) != want {
			t.Errorf("generations started: %q, want %q", data, want)
		}
	}
	t.Run("at boot", func(t *testing.T) {
		cg := pidsCgroup(t)
		limit(t, cg, "1")
		gens := filepath.Join(t.TempDir(), "generations")
		// sh is PID 1 first: it joins the cgroup (a move ignores
		// pids.max) and becomes the test binary, whose first fork,
		// the supervisor's, the limit refuses.
		cmd := exec.Command("/bin/sh", "-c", `echo 0 > "$0/cgroup.procs" && exec "$@"`, cg,
			os.Args[0], "-test.run=^TestSupervisorRecordsItsGeneration$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), reaper.PID1Env+"=1", "PV_TEST_GENERATIONS="+gens)
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
		p := startPID1(t, cmd)
		p.waitFor(t, "fork of the supervisor refused")
		limit(t, cg, "max")
		check(t, p, gens, "0 ")
	})
	t.Run("after a crash", func(t *testing.T) {
		cg := pidsCgroup(t)
		dir := t.TempDir()
		gens := filepath.Join(dir, "generations")
		t.Setenv("PV_TEST_GENERATIONS", gens)
		p := startPID1(t, underReaper(t, "TestSupervisorCrashesWhenTold"))
		p.waitFor(t, "supervisor up\n")
		if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(p.cmd.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
		limit(t, cg, "1")
		if err := os.WriteFile(filepath.Join(dir, "crash"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		p.waitFor(t, "fork of the supervisor refused")
		limit(t, cg, "max")
		check(t, p, gens, "0 1 ")
	})
}

// recordGeneration appends the supervisor's generation to the file
// PV_TEST_GENERATIONS names.
func recordGeneration(t *testing.T) {
	f, err := os.OpenFile(os.Getenv("PV_TEST_GENERATIONS"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "%d ", reaper.Generation())
	f.Close()
}

// comeUp makes the supervisor up for PID 1, which then starts it again
// after a crash: its control socket (a listener beside
// PV_TEST_GENERATIONS) goes to PID 1. It says "supervisor up".
func comeUp(t *testing.T) {
	exits, err := reaper.OpenExits(slog.Default())
	if err != nil || exits == nil {
		t.Fatalf("no exit channel: %v", err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(filepath.Dir(os.Getenv("PV_TEST_GENERATIONS")), "sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if err := exits.KeepListener(l); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(os.Stderr, "supervisor up")
}

func TestSupervisorRecordsItsGeneration(t *testing.T) {
	childOnly(t)
	recordGeneration(t)
}

// The first generation comes up (its control socket to PID 1) and, once
// the file "crash" beside PV_TEST_GENERATIONS exists, dies of SIGKILL;
// the next ends cleanly.
func TestSupervisorCrashesWhenTold(t *testing.T) {
	childOnly(t)
	recordGeneration(t)
	if reaper.Generation() > 0 {
		return
	}
	comeUp(t)
	dir := filepath.Dir(os.Getenv("PV_TEST_GENERATIONS"))
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "crash")); err == nil {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
	t.Fatal("never told to crash")
}

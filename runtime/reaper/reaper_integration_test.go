//go:build integration

package reaper_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/runtime/driver"
	_ "github.com/pantavisor/pv/runtime/driver/initshim"
	"github.com/pantavisor/pv/runtime/reaper"
	"github.com/pantavisor/pv/runtime/rootfs"
	"github.com/pantavisor/pv/runtime/testrootfs"
	"github.com/pantavisor/pv/spec"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testrootfs.Cleanup()
	os.Exit(code)
}

// runSupervisor runs this test binary under reaper.Run, as the child, with
// only the named test selected.
func runSupervisor(t *testing.T, test string) int {
	t.Helper()
	if os.Getpid() != 1 || os.Geteuid() != 0 {
		t.Skip("needs root as PID 1 in fresh namespaces: go test -tags integration -exec 'unshare --pid --net --mount --fork --mount-proc'")
	}
	if reaper.IsChild() {
		t.Skip("parent-side test")
	}
	code, err := reaper.Run(reaper.Options{
		Args: []string{os.Args[0], "-test.run=^" + test + "$", "-test.v", "-test.count=1"},
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func childOnly(t *testing.T) {
	if !reaper.IsChild() {
		t.Skip("runs as the supervisor child of another test")
	}
	if os.Getenv(reaper.ChildEnv) != "" {
		t.Errorf("%s still in the child's environment", reaper.ChildEnv)
	}
}

// (e) Orphans from plain commands and from a container are reaped by PID 1
// while the supervisor's own waits (os/exec, container inits) keep their
// exact statuses.
func TestReaperNoZombiesNoStolenStatus(t *testing.T) {
	if code := runSupervisor(t, "TestSupervisorWorkload"); code != 0 {
		t.Fatalf("supervisor exit code %d", code)
	}
	if z := testrootfs.Zombies(); len(z) > 0 {
		t.Errorf("zombies left: %v", z)
	}
}

func TestSupervisorWorkload(t *testing.T) {
	childOnly(t)
	if os.Getpid() == 1 {
		t.Fatal("supervisor is PID 1")
	}
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

// A signal sent to PID 1 reaches the supervisor.
func TestReaperForwardsSignals(t *testing.T) {
	done := make(chan int, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("panic: %v", r)
				done <- -1
			}
		}()
		done <- runSupervisor(t, "TestSupervisorWaitsForUSR1")
	}()
	// The child tells us it is ready by creating this file.
	ready := filepath.Join(os.TempDir(), "pv-reaper-ready")
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
			t.Fatal("supervisor never ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	os.Remove(ready)
	syscall.Kill(1, syscall.SIGUSR1) // ourselves: PID 1
	select {
	case code := <-done:
		if code != 42 {
			t.Fatalf("code = %d, want 42", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("supervisor did not get SIGUSR1")
	}
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

//go:build integration

package driver

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/spec"
)

// freezeNested moves pid into a frozen freezer cgroup nested in dir (a
// container's freezer cgroup): SIGKILL does not end it until the returned
// thaw, as a process in uninterruptible sleep (a hung FUSE server, a dead
// disk). Skips without a cgroup v1 freezer.
func freezeNested(t *testing.T, dir string, pid int) (thaw func()) {
	t.Helper()
	if dir == "" {
		t.Skip("no cgroup v1 freezer hierarchy")
	}
	sub := filepath.Join(dir, "stuck")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "freezer.state"), []byte("FROZEN"), 0); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw = func() {
		if !thawed {
			thawed = true
			_ = os.WriteFile(filepath.Join(sub, "freezer.state"), []byte("THAWED"), 0)
		}
	}
	t.Cleanup(thaw)
	return thaw
}

// A container whose init cannot end (its child frozen: the init, its pid
// namespace's reaper, waits for it) survives the SIGKILL of Stop, which
// says so after its wait. Destroy then says so at once: it waited for that
// kill already, and a second wait of its own, holding the container's lock
// (Pid waited for it), took 10 s more. Once the child ends, so does the
// init, and Destroy removes everything.
func TestDestroyDoesNotWaitAgainForAnInitThatSurvivedSIGKILL(t *testing.T) {
	e := newEnv(t)
	c, log := e.create(t, "frozen", &spec.Container{Args: []string{"/bin/sh", "-c", `sleep 1000 & echo child=$!; wait`}}, nil)
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "child", fileContains(log, "child="))
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.Pid()), "task", strconv.Itoa(c.Pid()), "children"))
	if err != nil || len(strings.Fields(string(data))) == 0 {
		t.Fatalf("init's children: %q %v", data, err)
	}
	child, _ := strconv.Atoi(strings.Fields(string(data))[0])
	thaw := freezeNested(t, cgroupPaths(c.lc)["freezer"], child)

	start := time.Now()
	if _, err := c.Stop(100 * time.Millisecond); !errors.Is(err, ErrKillTimeout) {
		t.Fatalf("Stop = %v, want ErrKillTimeout", err)
	}
	if took := time.Since(start); took < killWait {
		t.Errorf("Stop gave up after %v, before its wait of %v", took, killWait)
	}
	start = time.Now()
	if err := c.Destroy(); !errors.Is(err, ErrKillTimeout) {
		t.Fatalf("Destroy of a container still running = %v, want ErrKillTimeout", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Destroy waited %v for a kill Stop waited for already", took)
	}
	select {
	case <-c.Done():
		t.Fatal("the init ended while its child was frozen")
	default:
	}
	thaw()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the init did not end once its child was thawed")
	}
	if err := c.Destroy(); err != nil {
		t.Fatalf("Destroy once it ended: %v", err)
	}
}

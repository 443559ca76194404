//go:build integration

package driver

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/runtime/driver/initshim"
	"github.com/pantavisor/pv/runtime/testrootfs"
	"github.com/pantavisor/pv/spec"
)

// fdLister prints the descriptors a container's command has open.
var fdLister = &spec.Container{Args: []string{"/bin/sh", "-c", "ls /proc/self/fd | tr '\\n' ' '"}}

// runLister starts fdLister, returns what its init was executed from just
// before the exec of the command, and what the command printed.
func runLister(t *testing.T, e *testEnv, name string) (initExe, fds string) {
	t.Helper()
	c, log := e.create(t, name, fdLister, nil)
	done := make(chan error, 1)
	go func() { done <- c.Start() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		// The init is stuck before libcontainer knows its pid: kill every
		// child, so that the start fails and the test ends.
		children, _ := testrootfs.Children(os.Getpid())
		for _, pid := range children {
			unix.Kill(pid, unix.SIGKILL)
		}
		t.Fatalf("container start hangs (%v)", <-done)
	}
	initExe, err := os.Readlink("/proc/" + strconv.Itoa(c.Pid()) + "/exe")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(); err != nil {
		t.Fatal(err)
	}
	if exit, err := c.Wait(); err != nil || !exit.Success() {
		t.Fatalf("exit %v, %v", exit, err)
	}
	b, _ := os.ReadFile(log)
	return initExe, string(b)
}

// The container init binary takes over every init while the handle is
// open, through either sealing, and the command sees exactly the
// descriptors it sees without it.
func TestInitHandoff(t *testing.T) {
	e := newEnv(t)
	selfExe, selfFds := runLister(t, e, "handoff-self")
	if filepath.Base(selfExe) == initshim.InitName {
		t.Fatalf("init is %s without a handle", selfExe)
	}
	if selfFds != "0 1 2 3 " {
		t.Errorf("without a handle the command has %q open, want 0 1 2 and its own", selfFds)
	}
	path := goBuild(t, t.TempDir(), initshim.InitName, "../../cmd/pvinit")
	for _, tt := range []struct {
		sealing Sealing
		exe     string
	}{
		{SealingOverlay, "/" + initshim.InitName},
		{SealingMemfd, "/memfd:" + initshim.InitName + " (deleted)"},
	} {
		t.Run(string(tt.sealing), func(t *testing.T) {
			ci, err := openInit(path, t.TempDir(), tt.sealing == SealingOverlay)
			if err != nil {
				t.Fatal(err)
			}
			defer ci.Close()
			if ci.Sealing != tt.sealing {
				t.Fatalf("sealing %s, want %s", ci.Sealing, tt.sealing)
			}
			if ci.OverlayErr != nil {
				t.Errorf("overlay refused: %v", ci.OverlayErr)
			}
			exe, fds := runLister(t, e, "handoff-"+string(tt.sealing))
			if exe != tt.exe {
				t.Errorf("init executed from %q, want %q", exe, tt.exe)
			}
			if fds != selfFds {
				t.Errorf("the command has %q open, %q without the hand-off", fds, selfFds)
			}
		})
	}
	// Closed again: inits are copies of this program again.
	if exe, _ := runLister(t, e, "handoff-closed"); exe != selfExe {
		t.Errorf("after Close the init is %s, want %s", exe, selfExe)
	}
}

// Whatever else is at the handle's descriptor in the parent is left alone:
// a fifo is not opened (an open would block, and libcontainer's exec fifo
// is one), and a pvinit that can be written to is not executed.
func TestInitHandoffIgnoresOthers(t *testing.T) {
	e := newEnv(t)
	if _, err := unix.FcntlInt(initshim.InitFd, unix.F_GETFD, 0); err == nil {
		t.Skipf("descriptor %d is in use in this test process", initshim.InitFd)
	}
	dir := t.TempDir()
	fifo := filepath.Join(dir, initshim.InitName)
	if err := unix.Mkfifo(fifo, 0o755); err != nil {
		t.Fatal(err)
	}
	writable := filepath.Join(t.TempDir(), initshim.InitName)
	goBuild(t, filepath.Dir(writable), initshim.InitName, "../../cmd/pvinit")
	for _, tt := range []struct{ name, path string }{
		{"fifo", fifo},
		{"writable pvinit", writable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fd, err := unix.Open(tt.path, unix.O_PATH|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			err = unix.Dup3(fd, initshim.InitFd, unix.O_CLOEXEC)
			unix.Close(fd)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(initshim.InitFd)
			exe, _ := runLister(t, e, "ignore-"+strings.ReplaceAll(tt.name, " ", "-"))
			if filepath.Base(exe) == initshim.InitName {
				t.Errorf("init executed from %s", exe)
			}
		})
	}
}

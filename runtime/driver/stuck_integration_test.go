//go:build integration

package driver

import (
	"errors"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/freezetest"
	"github.com/pantavisor/pv/spec"
)

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
	kids := freezetest.Children(c.Pid())
	if len(kids) == 0 {
		t.Fatal("the init has no child")
	}
	thaw := freezetest.Nested(t, cgroupPaths(c.lc)["freezer"], kids[0])

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

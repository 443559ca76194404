//go:build integration

package writeback

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/stuckdev"
)

// envStopper makes the test binary a process that syncs as a stopping
// supervisor does, for at most 300 ms, and then exits.
const envStopper = "PV_WRITEBACK_STOPPER"

func TestMain(m *testing.M) {
	if os.Getenv(envStopper) == "1" {
		if Sync(300 * time.Millisecond) {
			os.Exit(3) // ended: the disk was not stuck
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// dirty leaves size bytes of the file at path dirty in the page cache,
// suspend called in between (stuckdev.Overwrite).
func dirty(t *testing.T, path string, size int, suspend func()) {
	t.Helper()
	if err := stuckdev.Overwrite(path, size, true); err != nil {
		t.Fatal(err)
	}
	suspend()
	if err := stuckdev.Overwrite(path, size, false); err != nil {
		t.Fatal(err)
	}
}

// A sync that ends in time says so, with what was dirty written.
func TestSyncEnds(t *testing.T) {
	_, mnt := stuckdev.MountedExt4(t)
	dirty(t, filepath.Join(mnt, "f"), 1<<20, func() {})
	if !Sync(time.Minute) {
		t.Fatal("the sync of a disk that answers did not end within a minute")
	}
}

// A disk that stops answering as the device stops does not keep the
// stopping process from ending: its sync is left behind in the child.
// Before, a thread of the process made it, stuck in the kernel for
// good, and the process could not end.
func TestStuckSyncDoesNotHoldTheProcess(t *testing.T) {
	d, mnt := stuckdev.MountedExt4(t)
	dirty(t, filepath.Join(mnt, "f"), 1<<20, d.Suspend)
	stopper := exec.Command(os.Args[0])
	stopper.Env = append(os.Environ(), envStopper+"=1")
	var out bytes.Buffer
	stopper.Stdout, stopper.Stderr = &out, &out
	if err := stopper.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- stopper.Wait() }()
	// Resumed before stopper is waited for at the end, should it be
	// stuck: its exit waits for the disk then.
	defer func() {
		d.Resume()
		<-ended
	}()
	select {
	case err := <-ended:
		ended <- err
		if err != nil {
			t.Fatalf("the stopping process: %v (3: its sync ended, the disk was not stuck)\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the stopping process has not ended 10 s after its sync was left behind (%d writes held)", d.Held())
	}
	if d.Held() == 0 {
		t.Error("no write of the disk held: the sync was not stuck")
	}
}

package xconnect

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestDialAsHelpersBounded: many connections to a dbus link at once (a
// consumer opening them without end) start a bounded number of dial
// helpers at a time. Each helper is a process running the whole binary
// and holds a thread of the supervisor locked to its wait: one per
// connection at once was hundreds of processes (memory the device does
// not have) and threads (Go's limit of 10 000 is a fatal error).
//
// The helpers are stood for by runs that hold until the test lets them
// go, so that none ends and makes room for the next: how many run at
// once is then how many were let start.
func TestDialAsHelpersBounded(t *testing.T) {
	const dials, bound = 64, 8
	dir := t.TempDir()
	path := filepath.Join(dir, "bus.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	running, most := 0, 0
	release := make(chan struct{})
	defer func(r func(context.Context, *exec.Cmd, *os.File) error) { runHelper = r }(runHelper)
	runHelper = func(ctx context.Context, _ *exec.Cmd, theirs *os.File) error {
		theirs.Close()
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		defer func() {
			mu.Lock()
			running--
			mu.Unlock()
		}()
		select {
		case <-release:
		case <-ctx.Done():
		}
		return errors.New("released by the test")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for range dials {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c, err := DialAs(ctx, 0, path, 1001, 1001); err == nil {
				c.Close()
			}
		}()
	}
	// Every dial is either running its helper or waiting for a turn
	// once the bound's worth have started; give the others time to
	// start too, were they not held back.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := running
		mu.Unlock()
		if n > 0 {
			break
		}
	}
	time.Sleep(500 * time.Millisecond)
	close(release)
	wg.Wait()
	if most > bound {
		t.Fatalf("%d dial helpers at once for %d dials, want at most %d", most, dials, bound)
	}
	if most == 0 {
		t.Fatal("no dial helper started")
	}
}

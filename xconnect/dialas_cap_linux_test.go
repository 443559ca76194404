package xconnect

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// children lists the pids of this process's children.
func children(t *testing.T) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid())
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, not ")".
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == self {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestDialAsHelpersBounded: many connections to a dbus link at once (a
// consumer opening them without end) start a bounded number of dial
// helpers at a time. Each helper is a process running the whole binary
// and holds a thread of the supervisor locked to its wait: one per
// connection at once was hundreds of processes (memory the device does
// not have) and threads (Go's limit of 10 000 is a fatal error).
//
// Every child is stopped as soon as it is seen, so that none ends and
// makes room for the next: how many exist at once is then how many were
// let start.
func TestDialAsHelpersBounded(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	const dials, bound = 64, 8
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "bus.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Chmod(path, 0o666)
	ctx, cancel := context.WithCancel(context.Background())
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
	seen := map[int]bool{}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && len(seen) < dials; {
		for _, pid := range children(t) {
			if !seen[pid] {
				seen[pid] = true
				syscall.Kill(pid, syscall.SIGSTOP)
			}
		}
	}
	alive := len(children(t))
	// Release them all: killed, each DialAs fails.
	cancel()
	for pid := range seen {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	wg.Wait()
	if alive > bound {
		t.Fatalf("%d dial helpers at once for %d dials, want at most %d", alive, dials, bound)
	}
	if alive == 0 {
		t.Fatal("no dial helper seen")
	}
}

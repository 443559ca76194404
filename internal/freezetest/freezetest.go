// Package freezetest makes, for the integration tests, a process that
// SIGKILL does not end: what a process in uninterruptible sleep (a hung
// FUSE server, a stuck NFS mount, a dying disk) is to whoever stops its
// container. The process is moved into a cgroup v1 freezer cgroup nested
// in its container's and frozen: a frozen task takes its SIGKILL only once
// thawed, and its container's init, the reaper of its pid namespace,
// cannot end before it. The container's own freezer cgroup is left
// thawed, as libcontainer thaws it for a SIGKILL.
package freezetest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Root is where the cgroup v1 freezer hierarchy is mounted.
const Root = "/sys/fs/cgroup/freezer"

// Dir is the directory of pid's freezer cgroup. tb skips on a host with
// no cgroup v1 freezer hierarchy.
func Dir(tb testing.TB, pid int) string {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 && parts[1] == "freezer" {
			dir := filepath.Join(Root, parts[2])
			if _, err := os.Stat(filepath.Join(dir, "freezer.state")); err == nil {
				return dir
			}
		}
	}
	tb.Skipf("freezetest: no cgroup v1 freezer hierarchy for pid %d", pid)
	return ""
}

// Nested moves pid into a frozen freezer cgroup made in dir (its
// container's freezer cgroup; "" skips tb): SIGKILL does not end it until
// thaw, which tb's end calls too. The nested cgroup is removed by the
// container's teardown once pid is gone, or at tb's end.
func Nested(tb testing.TB, dir string, pid int) (thaw func()) {
	tb.Helper()
	if dir == "" {
		tb.Skip("freezetest: no cgroup v1 freezer hierarchy")
	}
	sub := filepath.Join(dir, "frozen")
	if err := os.Mkdir(sub, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "freezer.state"), []byte("FROZEN"), 0); err != nil {
		tb.Fatal(err)
	}
	thawed := false
	thaw = func() {
		if thawed {
			return
		}
		thawed = true
		if err := os.WriteFile(filepath.Join(sub, "freezer.state"), []byte("THAWED"), 0); err != nil && !os.IsNotExist(err) {
			tb.Errorf("freezetest: thaw %s: %v", sub, err)
		}
	}
	tb.Cleanup(func() {
		thaw()
		_ = os.Remove(sub) // gone with the container, or empty by now
	})
	return thaw
}

// Children lists the children of pid (its main thread's).
func Children(pid int) []int {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out
}

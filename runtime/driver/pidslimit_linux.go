package driver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Containers run as root without a user namespace: they share with the
// supervisor the kernel's task limits (kernel.threads-max, about 2000 on a
// board with 256 MB of RAM, and kernel.pid_max) and those of every cgroup
// above them. A container that forks or spawns threads without end (a fork
// bomb, a Java application with thousands of threads) would take them all;
// the Go runtime aborts when it cannot create a thread, and PID 1 could not
// fork a new supervisor either. So the cgroup all containers live under
// gets a pids.max below the limit it shares with the supervisor, keeping a
// reserve for the supervisor, its tools, PID 1 and the kernel's threads: a
// container's fork bomb meets that limit, and the supervisor goes on to
// stop or restart it.

// minPidsReserve is the least number of tasks kept out of the containers'
// reach: on a board with threads-max 2048, about a hundred kernel threads,
// the supervisor's few dozen and the tools it runs.
const minPidsReserve = 256

// containersPidsMax is the pids.max of the containers' parent cgroup under a
// shared limit of limit tasks: the limit less an eighth of it, at least
// minPidsReserve, but never more than half of it.
func containersPidsMax(limit int64) int64 {
	reserve := min(max(limit/8, minPidsReserve), limit/2)
	return limit - reserve
}

// readLimit reads a number from a sysctl or cgroup file; ok is false for
// "max", a missing file or anything unreadable.
func readLimit(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

// sharedPidsLimit is the task limit that parent, the cgroup holding the
// containers, shares with the processes beside it: the machine's
// (threads-max and pid_max) and the pids.max of every cgroup above parent,
// up to the root of its hierarchy. ok is false when none is known.
func sharedPidsLimit(parent string) (limit int64, ok bool) {
	for _, f := range []string{"/proc/sys/kernel/threads-max", "/proc/sys/kernel/pid_max"} {
		if n, found := readLimit(f); found && (!ok || n < limit) {
			limit, ok = n, true
		}
	}
	// Every cgroup directory has cgroup.procs; the directory holding the
	// hierarchy's mount does not.
	for dir := filepath.Dir(parent); ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
			break
		}
		if n, found := readLimit(filepath.Join(dir, "pids.max")); found && (!ok || n < limit) {
			limit, ok = n, true
		}
		if dir == "/" {
			break
		}
	}
	return limit, ok
}

// pidsParent returns the directory that holds the containers' cgroups in
// the pids hierarchy, from a container's cgroup paths; "" when it has none.
// The limit goes there, below every level of an absolute or nested cgroup
// parent: the levels above may be shared with the supervisor.
func (d *Driver) pidsParent(paths map[string]string) string {
	key := "pids"
	if d.cgroupV2 {
		key = ""
	}
	parent := strings.Trim(filepath.Clean(d.cgroupParent), "/")
	p := paths[key]
	if p == "" || parent == "" || parent == "." || !strings.HasSuffix(filepath.Dir(p), "/"+parent) {
		return ""
	}
	return filepath.Dir(p)
}

// limitParent sets the pids.max of the containers' parent cgroup (see
// above) from a container's cgroup paths. A lower limit found there (an
// operator's) is kept. Without a pids controller there is nothing to set.
func (d *Driver) limitParent(paths map[string]string) error {
	dir := d.pidsParent(paths)
	if dir == "" {
		return nil
	}
	file := filepath.Join(dir, "pids.max")
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	limit, ok := sharedPidsLimit(dir)
	if !ok {
		return nil
	}
	want := containersPidsMax(limit)
	if cur, ok := readLimit(file); ok && cur <= want {
		return nil
	}
	if err := os.WriteFile(file, []byte(strconv.FormatInt(want, 10)), 0o644); err != nil {
		return fmt.Errorf("limit the containers' tasks to %d: %w", want, err)
	}
	return nil
}

// limitParentOrLog is limitParent for a start, which goes on without the
// limit: containers that cannot start are worse than a missing reserve.
func (d *Driver) limitParentOrLog(paths map[string]string) {
	if err := d.limitParent(paths); err != nil {
		d.log.Warn("containers' parent cgroup", "err", err)
	}
}

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

const hybridMountinfo = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:39 /sub /mnt/cg rw,relatime - cgroup cgroup rw,blkio
`

const hybridSelf = `9:name=systemd:/
8:pids:/
7:blkio:/other
4:memory:/job/7
1:cpu:/
0::/
`

func TestCgroupParentDirs(t *testing.T) {
	got := cgroupParentDirs(hybridMountinfo, hybridSelf, "pantavisor-1234")
	want := []string{
		"/sys/fs/cgroup/cpu/pantavisor-1234",
		"/sys/fs/cgroup/memory/job/7/pantavisor-1234",
		"/sys/fs/cgroup/pids/pantavisor-1234",
		"/sys/fs/cgroup/systemd/pantavisor-1234",
		"/sys/fs/cgroup/unified/pantavisor-1234",
		// blkio: the mount shows /sub, our cgroup is /other: not there.
	}
	if !slices.Equal(got, want) {
		t.Errorf("relative parent:\n got %q\nwant %q", got, want)
	}
	got = cgroupParentDirs(hybridMountinfo, hybridSelf, "/pv/dev")
	if !slices.Contains(got, "/sys/fs/cgroup/memory/pv/dev") {
		t.Errorf("absolute parent is under the hierarchy root: %q", got)
	}
	v2 := "30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
	if got := cgroupParentDirs(v2, "0::/user.slice/x.scope\n", "pv"); !slices.Equal(got, []string{"/sys/fs/cgroup/user.slice/x.scope/pv"}) {
		t.Errorf("v2: %q", got)
	}
}

// TestRemoveEmptyTreeRealCgroups makes a real cgroup tree as a killed run
// leaves it, with one cgroup still holding a process: the empty ones go,
// the busy one and its parents stay.
func TestRemoveEmptyTreeRealCgroups(t *testing.T) {
	hier := "/sys/fs/cgroup/pids"
	if st, err := os.Stat(filepath.Join(hier, "cgroup.procs")); err != nil || os.Geteuid() != 0 || st.IsDir() {
		t.Skip("needs root and a cgroup v1 pids hierarchy at " + hier)
	}
	top := filepath.Join(hier, "pv-test-leftover-"+strconv.Itoa(os.Getpid()))
	for _, d := range []string{"a/sub", "b", "busy"} {
		if err := os.MkdirAll(filepath.Join(top, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sleeper.Process.Kill()
		sleeper.Wait()
		removeEmptyTree(top)
	})
	if err := os.WriteFile(filepath.Join(top, "busy", "cgroup.procs"), []byte(strconv.Itoa(sleeper.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	removed, err := removeEmptyTree(top)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(top, "b"), filepath.Join(top, "a", "sub"), filepath.Join(top, "a")}
	slices.Sort(want)
	slices.Sort(removed)
	if !slices.Equal(removed, want) {
		t.Errorf("removed %q, want %q", removed, want)
	}
	if _, err := os.Stat(filepath.Join(top, "busy")); err != nil {
		t.Errorf("the cgroup with a process was removed: %v", err)
	}
	// Once its process is gone, the rest goes.
	sleeper.Process.Kill()
	sleeper.Wait()
	if _, err := removeEmptyTree(top); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(top); !os.IsNotExist(err) {
		t.Errorf("%s left after its last process exited: %v", top, err)
	}
}

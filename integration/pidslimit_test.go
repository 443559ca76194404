//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/runtime/driver"
)

// A device's containers share the kernel's task limits with its
// supervisor: the cgroup holding them keeps a reserve below those
// limits, so that a fork bomb in a container leaves the supervisor
// threads to run on.
func TestContainersParentKeepsTasksForSupervisor(t *testing.T) {
	isolated.Require(t)
	storage := buildStorage(t, []map[string]any{{"name": "g", "status_goal": "STARTED", "timeout": 30}},
		[]ctr{{name: "a", group: "g", cmd: `/bin/sh "-c" "` + idle + `"`}})
	d := startDevice(t, storage)
	d.waitContainers("a started", 20*time.Second, statusIs(messages.StatusStarted, "a"))
	machine := int64(-1)
	for _, f := range []string{"/proc/sys/kernel/threads-max", "/proc/sys/kernel/pid_max"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if machine < 0 || n < machine {
			machine = n
		}
	}
	checked := 0
	for _, dir := range cgroupsNamed(driver.DeviceCgroupParent(storage)) {
		b, err := os.ReadFile(filepath.Join(dir, "pids.max"))
		if err != nil {
			continue // another hierarchy
		}
		checked++
		got := strings.TrimSpace(string(b))
		if n, err := strconv.ParseInt(got, 10, 64); err != nil || n > machine-256 {
			t.Errorf("%s/pids.max = %s, want at most %d (the machine's %d less the supervisor's reserve)", dir, got, machine-256, machine)
		}
	}
	if checked == 0 {
		t.Skip("no pids controller over the containers' parent")
	}
}

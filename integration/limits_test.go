//go:build integration

package integration

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
)

// The OOM killer picks the largest process: the supervisor, when a
// container's memory is spread over small processes or a tmpfs. The
// supervisor keeps itself last (oom_score_adj -999); a container's init,
// cloned from it, gets the kernel's default back (0).
func TestOOMScoreSupervisorProtectedContainersNot(t *testing.T) {
	isolated.Require(t)
	if !hasCapSysResource(t) {
		t.Skip("no CAP_SYS_RESOURCE here: nothing may lower its oom_score_adj below 0")
	}
	storage := buildStorage(t, []map[string]any{{"name": "g", "status_goal": "STARTED", "timeout": 30}},
		[]ctr{{name: "a", group: "g", cmd: `/bin/sh "-c" "` + idle + `"`}})
	d := startDevice(t, storage)
	m := d.waitContainers("a started", 20*time.Second, statusIs(messages.StatusStarted, "a"))
	adj := func(pid int) string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	sup := supervisor(d)
	if sup == 0 {
		t.Fatal("no supervisor found")
	}
	if got := adj(sup); got != "-999" {
		t.Errorf("supervisor's oom_score_adj = %s, want -999", got)
	}
	if got := adj(hostPid(t, nsInit(t, d), m["a"].Pid)); got != "0" {
		t.Errorf("container init's oom_score_adj = %s, want 0", got)
	}
}

// hasCapSysResource says whether this process has CAP_SYS_RESOURCE, which
// the kernel asks of a lowering of oom_score_adj below 0.
func hasCapSysResource(t *testing.T) bool {
	v, ok := statusLine(os.Getpid(), "CapEff")
	if !ok {
		t.Fatal("no CapEff in /proc/self/status")
	}
	caps, err := strconv.ParseUint(v, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return caps&(1<<unix.CAP_SYS_RESOURCE) != 0
}

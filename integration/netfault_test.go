//go:build integration

package integration

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/messages"
)

// The netlink fault case of the reliability suite: a pool whose bridge
// name is taken by a link that is not a bridge when the pool is set up
// (the device's own loopback, "lo", which every network namespace has).
// Expected: the pool's setup fails with an error naming the link; the
// pool's container ends FAILED, saying why; the rest of the revision
// runs and the control socket answers; nothing of the failed setup (no
// address, no rule) is left on the link.
func TestReliabilityBridgeNameTaken(t *testing.T) {
	requireIsolatedNet(t)
	var done, passed int
	var figure string
	record(t, "pool bridge name taken by another link", &done, &passed, func() string { return figure })
	rounds := runs(t, 3, 1)
	for i := 1; i <= rounds; i++ {
		done = i
		storage := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
			{name: "pooled", group: "app", cmd: echoer("pooled-up"), run: map[string]any{
				"network":       map[string]any{"pool": "p"},
				"auto_recovery": map[string]any{"policy": "on-failure", "max_retries": 1, "retry_delay": 1}}},
			{name: "steady", group: "app", cmd: echoer("steady-up")},
		})
		addDeviceJSON(t, storage, `    "network": {"pools": {"p": {"type": "bridge", "bridge": "lo", "subnet": "10.0.9.0/24", "gateway": "10.0.9.1", "nat": true}}},`)
		d := startDevice(t, storage)
		m := d.waitContainers("pooled FAILED, steady started", 60*time.Second, func(m map[string]messages.ContainerInfo) bool {
			return m["steady"].Status == messages.StatusStarted && m["pooled"].Status == messages.StatusFailed
		})
		log := d.log()
		if !strings.Contains(log, "pool setup failed") || !strings.Contains(log, `"lo"`) && !strings.Contains(log, " lo ") && !strings.Contains(log, "lo:") {
			t.Fatalf("round %d: no pool setup error naming lo in the log:\n%s", i, log)
		}
		if !strings.Contains(m["pooled"].Error, "pool p") {
			t.Errorf("round %d: pooled's failure does not name its pool: %+v", i, m["pooled"])
		}
		out, err := nsenterNet(t, d, "ip", "-4", "addr", "show", "dev", "lo")
		if err != nil {
			t.Fatalf("ip addr: %v %s", err, out)
		}
		if strings.Contains(string(out), "10.0.9.1") {
			t.Errorf("round %d: the failed setup left its gateway address on lo:\n%s", i, out)
		}
		if out, code := d.pvcontrol("ls"); code != 0 {
			t.Fatalf("round %d: pvcontrol ls: %d %s", i, code, out)
		}
		if code := d.stop(30 * time.Second); code != 0 {
			t.Fatalf("round %d: stop: exit %d", i, code)
		}
		if !t.Failed() {
			passed++
		}
	}
	figure = fmt.Sprintf("%d of %d rounds: setup refused naming the link, the container FAILED naming its pool, the rest ran, nothing left on the link", passed, rounds)
}

// nsenterNet runs a command in the device's network namespace (its PID
// 1's), from the test's namespace.
func nsenterNet(t *testing.T, d *device, args ...string) ([]byte, error) {
	t.Helper()
	pid1 := nsInit(t, d)
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(pid1), "-n", "--"}, args...)...).CombinedOutput()
}

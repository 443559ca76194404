//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
)

// manyLinksConsumers is how many consumers share the links: enough that
// links are set up in several mount namespaces at once, few enough that
// the container count does not dominate the time measured.
const manyLinksConsumers = 4

// TestReliabilityManyLinks: one provider exports n unix services (all on
// its one echo socket) and manyLinksConsumers consumers require n/4 each.
// Expected: every link is in the graph with both ends' pids within a
// minute; from inside each consumer, its first and last link answer the
// echo; the supervisor's RSS and fds are reported; the device then stops
// on SIGTERM with exit 0 and leaves no process behind.
func TestReliabilityManyLinks(t *testing.T) {
	isolated.Require(t)
	n := runs(t, 200, 40)
	var done, passed int
	var fig string
	record(t, fmt.Sprintf("%d links in one revision", n), &done, &passed, func() string { return fig })
	done = 1

	always := map[string]any{"policy": "always", "retry_delay": 0}
	var services []any
	for i := range n {
		services = append(services, map[string]any{"name": fmt.Sprintf("s%03d", i), "type": "unix", "socket": "/run/prov/svc.sock"})
	}
	ctrs := []ctr{{name: "prov", group: "app", cmd: `/bin/pvapp "serve-unix" "/run/prov/svc.sock"`,
		run: map[string]any{"exports": "services.json", "auto_recovery": always}, services: services}}
	per := n / manyLinksConsumers
	names := []string{"prov"}
	for c := range manyLinksConsumers {
		var req []any
		for i := c * per; i < (c+1)*per; i++ {
			req = append(req, map[string]any{"name": fmt.Sprintf("s%03d", i), "type": "unix", "target": fmt.Sprintf("/run/s%03d/s.sock", i)})
		}
		first, last := c*per, (c+1)*per-1
		// The consumer uses its first and last link once, then idles.
		cmd := fmt.Sprintf(`/bin/sh "-c" "trap 'exit 0' TERM; pvapp dial-unix /run/s%03d/s.sock first%03d; pvapp dial-unix /run/s%03d/s.sock last%03d; while true; do sleep 1; done"`,
			first, first, last, last)
		name := fmt.Sprintf("c%d", c)
		names = append(names, name)
		ctrs = append(ctrs, ctr{name: name, group: "app", cmd: cmd,
			run: map[string]any{"services": map[string]any{"required": req}}})
	}
	start := time.Now()
	d := startDevice(t, buildStorage(t, []map[string]any{{"name": "app", "timeout": 120}}, ctrs))
	m := d.waitContainers("all STARTED", 2*time.Minute, statusIs(messages.StatusStarted, names...))

	// All links established: each in the graph with both ends' pids.
	var graph []messages.LinkInfo
	established := func() int {
		out, code := d.pvcontrol("graph", "ls", "--json")
		graph = nil
		if code != 0 || json.Unmarshal([]byte(out), &graph) != nil {
			return -1
		}
		k := 0
		for _, l := range graph {
			if l.Provider == "prov" && l.ProviderPid > 0 && l.ConsumerPid > 0 {
				k++
			}
		}
		return k
	}
	deadline := time.Now().Add(time.Minute)
	k := established()
	for k != n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		k = established()
	}
	allIn := time.Since(start)
	if k != n {
		t.Errorf("%d of %d links established after %v: %+v", k, n, allIn, graph)
	}

	// A sample used end to end from inside every consumer.
	used := 0
	for c := range manyLinksConsumers {
		first, last := c*per, (c+1)*per-1
		name := fmt.Sprintf("c%d", c)
		d.waitConsole(name, fmt.Sprintf(`reply "echo: first%03d"`, first), 30*time.Second)
		d.waitConsole(name, fmt.Sprintf(`reply "echo: last%03d"`, last), 30*time.Second)
		used += 2
	}
	sup := supervisor(d)
	rss, fds := rssKiB(sup), fdCount(sup)
	var pids []int
	for _, c := range m {
		if c.Pid > 0 {
			pids = append(pids, c.Pid)
		}
	}
	code := d.stop(time.Minute)
	left := alive(pids)
	fig = fmt.Sprintf("%d/%d links established in %.1fs from start; %d used end to end; supervisor RSS %.1f MiB, %d fds; exit %d, %d processes left",
		k, n, allIn.Seconds(), used, float64(rss)/1024, fds, code, len(left))
	if code != 0 {
		t.Errorf("pantavisor exited %d after SIGTERM", code)
	}
	if len(left) > 0 {
		t.Errorf("processes alive after the stop: %s", strings.Join(left, "\n"))
	}
	if !t.Failed() {
		passed = 1
	}
}

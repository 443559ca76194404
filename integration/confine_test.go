//go:build integration

package integration

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/messages"
)

// lxc.no_new_privs = 1 reaches the kernel: the container's processes run
// with NoNewPrivs set; a container without the key runs without it. A key
// asking for confinement that is not enforced refuses its container.
func TestConfinementKeys(t *testing.T) {
	show := `/bin/sh "-c" "grep NoNewPrivs /proc/self/status; echo SHOWN; exec sleep 1000"`
	d := startDevice(t, buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "nnp", group: "app", cmd: show, lxc: []string{"lxc.no_new_privs = 1"}},
		{name: "plain", group: "app", cmd: show},
		{name: "filtered", group: "app", cmd: show, lxc: []string{"lxc.seccomp.profile = /usr/share/lxc/config/common.seccomp"},
			run: map[string]any{"auto_recovery": map[string]any{"policy": "no"}}},
	}))
	d.waitConsole("nnp", "SHOWN", 30*time.Second)
	d.waitConsole("plain", "SHOWN", 30*time.Second)
	if c := d.console("nnp"); !regexp.MustCompile(`NoNewPrivs:\s+1`).MatchString(c) {
		t.Errorf("lxc.no_new_privs = 1 container: %q", c)
	}
	if c := d.console("plain"); !regexp.MustCompile(`NoNewPrivs:\s+0`).MatchString(c) {
		t.Errorf("container without the key: %q", c)
	}
	// A seccomp profile cannot be enforced yet: that container is refused,
	// saying which key, and never runs with less than it asked; the others
	// run.
	m := d.waitContainers("filtered refused", 30*time.Second, func(m map[string]messages.ContainerInfo) bool {
		return m["filtered"].Status == messages.StatusFailed
	})
	if e := m["filtered"].Error; !strings.Contains(e, "lxc.seccomp.profile") {
		t.Errorf("refusal does not name the key: %q", e)
	}
	if c := d.console("filtered"); strings.Contains(c, "SHOWN") {
		t.Errorf("the refused container ran: %q", c)
	}
}

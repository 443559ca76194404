//go:build integration

package integration

import (
	"regexp"
	"testing"
	"time"
)

// lxc.no_new_privs = 1 reaches the kernel: the container's processes run
// with NoNewPrivs set; a container without the key runs without it.
func TestNoNewPrivs(t *testing.T) {
	show := `/bin/sh "-c" "grep NoNewPrivs /proc/self/status; echo SHOWN; exec sleep 1000"`
	d := startDevice(t, buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "nnp", group: "app", cmd: show, lxc: []string{"lxc.no_new_privs = 1"}},
		{name: "plain", group: "app", cmd: show},
	}))
	d.waitConsole("nnp", "SHOWN", 30*time.Second)
	d.waitConsole("plain", "SHOWN", 30*time.Second)
	if c := d.console("nnp"); !regexp.MustCompile(`NoNewPrivs:\s+1`).MatchString(c) {
		t.Errorf("lxc.no_new_privs = 1 container: %q", c)
	}
	if c := d.console("plain"); !regexp.MustCompile(`NoNewPrivs:\s+0`).MatchString(c) {
		t.Errorf("container without the key: %q", c)
	}
}

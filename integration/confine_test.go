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
// with NoNewPrivs set; a container without the key runs without it. A
// seccomp denylist from the revision makes the denied call fail with its
// errno while the rest works, in the container's init itself (pid 1). A
// profile or key asking for what cannot be enforced refuses its container,
// naming the key, and the others run.
func TestConfinementKeys(t *testing.T) {
	show := `/bin/sh "-c" "grep NoNewPrivs /proc/self/status; echo SHOWN; exec sleep 1000"`
	noRetry := map[string]any{"auto_recovery": map[string]any{"policy": "no"}}
	d := startDevice(t, buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "nnp", group: "app", cmd: show, lxc: []string{"lxc.no_new_privs = 1"}},
		{name: "plain", group: "app", cmd: show},
		{name: "filtered", group: "app",
			cmd:   `/bin/sh "-c" "mkdir /tmp/d; echo mkdir=$? pid=$$; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; echo SHOWN; exec sleep 1000"`,
			lxc:   []string{"lxc.seccomp.profile = deny.seccomp"},
			files: map[string][]byte{"deny.seccomp": []byte("2\ndenylist\n# no new directories\nmkdir errno 13\nmkdirat errno 13\nreject_force_umount\n")}},
		{name: "notified", group: "app", cmd: show, run: noRetry,
			lxc:   []string{"lxc.seccomp.profile = notify.seccomp"},
			files: map[string][]byte{"notify.seccomp": []byte("2\ndenylist\nioctl notify\n")}},
		{name: "proxied", group: "app", cmd: show, run: noRetry,
			lxc: []string{"lxc.seccomp.notify.proxy = unix:/run/seccomp.sock"}},
	}))
	d.waitConsole("nnp", "SHOWN", 30*time.Second)
	d.waitConsole("plain", "SHOWN", 30*time.Second)
	d.waitConsole("filtered", "SHOWN", 30*time.Second)
	if c := d.console("nnp"); !regexp.MustCompile(`NoNewPrivs:\s+1`).MatchString(c) {
		t.Errorf("lxc.no_new_privs = 1 container: %q", c)
	}
	if c := d.console("plain"); !regexp.MustCompile(`NoNewPrivs:\s+0`).MatchString(c) {
		t.Errorf("container without the key: %q", c)
	}
	c := d.console("filtered")
	for _, want := range []string{`Permission denied`, `mkdir=1 pid=1\b`, `Seccomp:\s+2`} {
		if !regexp.MustCompile(want).MatchString(c) {
			t.Errorf("seccomp denylist container: no %q in %q", want, c)
		}
	}
	m := d.waitContainers("notified and proxied refused", 30*time.Second, func(m map[string]messages.ContainerInfo) bool {
		return m["notified"].Status == messages.StatusFailed && m["proxied"].Status == messages.StatusFailed
	})
	for name, want := range map[string]string{"notified": "lxc.seccomp.profile", "proxied": "lxc.seccomp.notify.proxy"} {
		if e := m[name].Error; !strings.Contains(e, want) {
			t.Errorf("%s: refusal does not name %s: %q", name, want, e)
		}
		if c := d.console(name); strings.Contains(c, "SHOWN") {
			t.Errorf("the refused container %s ran: %q", name, c)
		}
	}
	if m["filtered"].Status != messages.StatusStarted {
		t.Errorf("filtered: %s %s", m["filtered"].Status, m["filtered"].Error)
	}
}

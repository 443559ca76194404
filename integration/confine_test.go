//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
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
	show := `/bin/sh "-c" "grep NoNewPrivs /proc/self/status; echo SHOWN; ` + idle + `"`
	noRetry := map[string]any{"auto_recovery": map[string]any{"policy": "no"}}
	d := startDevice(t, buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "nnp", group: "app", cmd: show, lxc: []string{"lxc.no_new_privs = 1"}},
		{name: "plain", group: "app", cmd: show},
		{name: "filtered", group: "app",
			cmd:   `/bin/sh "-c" "mkdir /tmp/d; echo mkdir=$? pid=$$; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; echo SHOWN; ` + idle + `"`,
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

// lxc.idmap puts the container in a user namespace of its own: its root is
// the mapped uid on the host, while it is uid 0 inside. A map without gid
// ranges cannot be honoured as LXC would and refuses only that container.
func TestConfinementIDMap(t *testing.T) {
	show := `/bin/sh "-c" "grep -E '^(Uid|Gid):' /proc/self/status; echo SHOWN; ` + idle + `"`
	d := startDevice(t, buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		// The upstream template keeps the host's user namespace, which
		// an idmap cannot be honoured in: the mapped container drops it.
		{name: "mapped", group: "app", cmd: show, lxc: []string{"lxc.namespace.keep =", "lxc.namespace.keep = net ipc",
			"lxc.idmap = u 0 100000 65536", "lxc.idmap = g 0 100000 65536"}},
		{name: "half", group: "app", cmd: show, lxc: []string{"lxc.idmap = u 0 100000 65536"},
			run: map[string]any{"auto_recovery": map[string]any{"policy": "no"}}},
	}))
	// The mapped root must be able to reach its rootfs, as under LXC:
	// the test's temporary directories are 0700, a device's storage is
	// not. Until this chmod the container's start fails and is retried.
	for _, dir := range []string{filepath.Dir(d.run), d.run} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d.waitConsole("mapped", "SHOWN", 30*time.Second)
	if c := d.console("mapped"); !regexp.MustCompile(`Uid:\s+0\s`).MatchString(c) {
		t.Errorf("root inside the mapped container is not uid 0: %q", c)
	}
	m := d.waitContainers("mapped runs, half refused", 30*time.Second, func(m map[string]messages.ContainerInfo) bool {
		return m["mapped"].Pid > 0 && m["half"].Status == messages.StatusFailed
	})
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", hostPid(t, d.cmd.Process.Pid, m["mapped"].Pid)))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^Uid:\s+100000\s+100000\s`).Match(st) || !regexp.MustCompile(`(?m)^Gid:\s+100000\s`).Match(st) {
		t.Errorf("the mapped container's init is not uid/gid 100000 on the host:\n%s", st)
	}
	if e := m["half"].Error; !strings.Contains(e, "lxc.idmap") {
		t.Errorf("refusal does not name the key: %q", e)
	}
}

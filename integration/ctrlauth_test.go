//go:build integration

package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/messages"
)

// ctrlSample is a sample of the control socket's routes, as pvapp ctrl
// takes them (METHOD PATH BODY, "-" for none), with whether each needs
// the mgmt role.
var ctrlSample = []struct {
	method, path, body string
	mgmt               bool
}{
	{"GET", "/containers", "-", true},
	{"GET", "/groups", "-", true},
	{"GET", "/steps", "-", true},
	{"GET", "/config2", "-", true},
	{"GET", "/device-meta", "-", true},
	{"PUT", "/user-meta/probe", "value", true},
	{"POST", "/commands", `{"op":"TRY_ONCE","payload":""}`, true},
	{"GET", "/metrics", "-", true},
	{"GET", "/buildinfo", "-", true},
	// Any container may signal; one whose goal is not READY is told so.
	{"POST", "/signal", `{"type":"ready","payload":""}`, false},
}

// ctrlCallers are the containers of the permission test: who each is as
// run.json says, and whether the control socket must take it as mgmt.
var ctrlCallers = []struct {
	name string
	run  map[string]any
	mgmt bool
	// ready: its goal is READY, so its signal is expected (200).
	ready bool
}{
	{name: "admin", run: map[string]any{"roles": []any{"mgmt"}}, mgmt: true},
	// No roles key: upstream's default, mgmt.
	{name: "dflt", mgmt: true},
	{name: "guest", run: map[string]any{"roles": []any{"nobody"}}},
	// An empty list: no role at all. Its goal is READY: a container
	// without mgmt may still signal.
	{name: "plain", run: map[string]any{"roles": []any{}, "status_goal": "READY"}, ready: true},
}

// The permission of each sampled route checked for real: from inside
// containers with the mgmt role (explicit and upstream's default), with
// the nobody role and with none (the kernel tells pantavisor who is
// calling, through the socket's peer credentials and the caller's
// cgroup), and from the host. The unknown caller (a pid in no container
// pantavisor knows) cannot be made from a real container; ctrl's
// permission table covers it.
func TestControlSocketPermissionsFromContainers(t *testing.T) {
	isolated.Require(t)
	args := ""
	for _, r := range ctrlSample {
		args += ` "` + r.method + `" "` + r.path + `" '` + r.body + `'`
	}
	// Each container waits for pantavisor to know its pid (STARTED), then
	// asks.
	probe := `/bin/sh "-c" "sleep 1; exec /bin/pvapp ctrl` + strings.ReplaceAll(args, `"`, `\"`) + `"`
	var ctrs []ctr
	for _, c := range ctrlCallers {
		ctrs = append(ctrs, ctr{name: c.name, group: "app", cmd: probe, run: c.run})
	}
	d := startDevice(t, buildStorage(t, []map[string]any{{"name": "app"}}, ctrs))
	for _, c := range ctrlCallers {
		d.waitConsole(c.name, "pvapp: ctrl done", 30*time.Second)
	}
	for _, c := range ctrlCallers {
		t.Logf("%s:\n%s", c.name, d.console(c.name))
		lines := strings.Split(d.console(c.name), "\n")
		for _, r := range ctrlSample {
			var got string
			for _, l := range lines {
				if strings.HasPrefix(l, r.method+" "+r.path+" ") {
					got = l
				}
			}
			status := strings.Fields(strings.TrimPrefix(got, r.method+" "+r.path+" "))
			if len(status) == 0 {
				t.Errorf("%s: no answer to %s %s:\n%s", c.name, r.method, r.path, d.console(c.name))
				continue
			}
			switch {
			case r.path == "/signal" && c.ready:
				if status[0] != "200" {
					t.Errorf("%s: signal from a container whose goal is READY: %s", c.name, got)
				}
			case r.path == "/signal":
				// Goal STARTED: upstream's 500 "Signal not expected", never a 403.
				if status[0] != "500" || !strings.Contains(got, "Signal not expected") {
					t.Errorf("%s: %s", c.name, got)
				}
			case c.mgmt && status[0] != "200":
				t.Errorf("%s: mgmt container refused: %s", c.name, got)
			case !c.mgmt && (status[0] != "403" || !strings.Contains(got, "Request not sent from mgmt platform")):
				t.Errorf("%s: container without mgmt not refused: %s", c.name, got)
			}
		}
	}
	d.waitContainers("plain READY", 10*time.Second, statusIs(messages.StatusReady, "plain"))
	// pantavisor's own side (the host, as pvcontrol runs there) may do all
	// but signal, which only a container whose goal is READY may.
	for _, r := range ctrlSample {
		args := []string{"request", r.method, r.path}
		if r.body != "-" {
			args = append(args, r.body)
		}
		out, code := d.pvcontrol(args...)
		if r.path == "/signal" {
			if code == 0 || !strings.Contains(out, "Signal not expected") {
				t.Errorf("host pvcontrol %v: %d %s", args, code, out)
			}
		} else if code != 0 {
			t.Errorf("host pvcontrol %v: %d %s", args, code, out)
		}
	}
	for _, args := range [][]string{{"ls"}, {"steps", "ls"}, {"conf", "ls"}, {"usrmeta", "ls"}, {"cmd", "run-gc"}} {
		if out, code := d.pvcontrol(args...); code != 0 {
			t.Errorf("host pvcontrol %v: %d %s", args, code, out)
		}
	}
}

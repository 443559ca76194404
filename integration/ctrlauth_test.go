//go:build integration

package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
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
	{"PUT", "/user-meta/probe", "value", true},
	{"POST", "/commands", `{"op":"TRY_ONCE","payload":""}`, true},
	{"GET", "/metrics", "-", true},
	{"GET", "/buildinfo", "-", true},
	// Any container may signal; one whose goal is not READY is told so.
	{"POST", "/signal", `{"type":"ready","payload":""}`, false},
}

// The permission of each sampled route checked for real: from inside a
// container with the mgmt role, from one with the nobody role (the kernel
// tells pantavisor who is calling, through the socket's peer credentials
// and the caller's cgroup), and from the host.
func TestControlSocketPermissionsFromContainers(t *testing.T) {
	isolated.Require(t)
	args := ""
	for _, r := range ctrlSample {
		args += ` "` + r.method + `" "` + r.path + `" '` + r.body + `'`
	}
	// Each container waits for pantavisor to know its pid (STARTED), then
	// asks.
	probe := `/bin/sh "-c" "sleep 1; exec /bin/pvapp ctrl` + strings.ReplaceAll(args, `"`, `\"`) + `"`
	dir := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{
		{name: "admin", group: "app", cmd: probe},
		{name: "guest", group: "app", cmd: probe, run: map[string]any{"roles": []any{"nobody"}}},
	})
	d := startDevice(t, dir)
	d.waitConsole("admin", "pvapp: ctrl done", 30*time.Second)
	d.waitConsole("guest", "pvapp: ctrl done", 30*time.Second)
	for _, who := range []string{"admin", "guest"} {
		t.Logf("%s:\n%s", who, d.console(who))
		lines := strings.Split(d.console(who), "\n")
		for _, r := range ctrlSample {
			var got string
			for _, l := range lines {
				if strings.HasPrefix(l, r.method+" "+r.path+" ") {
					got = l
				}
			}
			status := strings.Fields(strings.TrimPrefix(got, r.method+" "+r.path+" "))
			if len(status) == 0 {
				t.Errorf("%s: no answer to %s %s:\n%s", who, r.method, r.path, d.console(who))
				continue
			}
			switch {
			case r.path == "/signal":
				// Goal STARTED: upstream's 500 "Signal not expected", never a 403.
				if status[0] != "500" || !strings.Contains(got, "Signal not expected") {
					t.Errorf("%s: %s", who, got)
				}
			case who == "admin" && status[0] != "200":
				t.Errorf("mgmt container refused: %s", got)
			case who == "guest" && r.mgmt && (status[0] != "403" || !strings.Contains(got, "Request not sent from mgmt platform")):
				t.Errorf("nobody container not refused: %s", got)
			}
		}
	}
	// pantavisor's own side (the host, as pvcontrol runs there) may do all.
	for _, args := range [][]string{{"ls"}, {"steps", "ls"}, {"conf", "ls"}, {"usrmeta", "ls"}} {
		if out, code := d.pvcontrol(args...); code != 0 {
			t.Errorf("host pvcontrol %v: %d %s", args, code, out)
		}
	}
}

//go:build integration

package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
)

// A container that keeps the host cgroup namespace can mount the cgroup
// hierarchies and move itself to their roots, where a cgroup-only lookup
// took it for pantavisor itself. Identified by its namespaces, it stays
// who it is: the nobody container is refused a mgmt route, the mgmt one
// (the control: the same escape, the same request) is served. A request
// whose sender connected and exited before the answer is never the host's.
func TestControlSocketIdentityOutlivesCgroupEscape(t *testing.T) {
	isolated.Require(t)
	escape := `/bin/sh "-c" "sleep 1; exec /bin/pvapp escape-cgroups ctrl GET /containers -"`
	orphan := `/bin/sh "-c" "sleep 1; exec /bin/pvapp orphan GET /containers"`
	keep := []string{"lxc.namespace.keep = cgroup"}
	nobody := map[string]any{"roles": []any{"nobody"}}
	ctrs := []ctr{
		{name: "guest", group: "app", cmd: escape, lxc: keep, run: nobody},
		{name: "admin", group: "app", cmd: escape, lxc: keep, run: map[string]any{"roles": []any{"mgmt"}}},
		{name: "orphan", group: "app", cmd: orphan, run: nobody},
	}
	d := startDevice(t, buildStorage(t, []map[string]any{{"name": "app"}}, ctrs))
	for _, c := range []string{"guest", "admin"} {
		d.waitConsole(c, "pvapp: ctrl done", 30*time.Second)
		out := d.console(c)
		t.Logf("%s:\n%s", c, out)
		escaped := ""
		for _, l := range strings.Split(out, "\n") {
			if rest, ok := strings.CutPrefix(l, "pvapp: escaped cgroups: "); ok {
				escaped = rest
			}
		}
		if escaped == "" {
			t.Fatalf("%s did not leave its cgroups, so the test proves nothing:\n%s", c, out)
		}
		for _, f := range strings.Fields(escaped) {
			if !strings.HasSuffix(f, ":/") {
				t.Errorf("%s: still in cgroup %q after the escape", c, f)
			}
		}
		want := "GET /containers 403"
		if c == "admin" {
			want = "GET /containers 200"
		}
		if !strings.Contains(out, want) {
			t.Errorf("%s at the cgroup roots: want %q:\n%s", c, want, out)
		}
	}
	d.waitConsole("orphan", "pvapp: orphan done", 30*time.Second)
	out := d.console("orphan")
	t.Logf("orphan:\n%s", out)
	if !strings.Contains(out, "ORPHAN GET /containers 403") {
		t.Errorf("a request whose sender exited: want 403:\n%s", out)
	}
}

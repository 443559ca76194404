package xconnect

import (
	"encoding/json"
	"testing"

	"github.com/pantavisor/pv/internal/revtest"
	"github.com/pantavisor/pv/state"
)

func parse(t *testing.T, doc map[string]any) *state.State {
	t.Helper()
	data, err := json.Marshal(revtest.WithRootVolumes(doc))
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Parse(data, state.Options{AppEngine: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestGraphMatchesNameAndType(t *testing.T) {
	run := func(name string, services map[string]any) map[string]any {
		r := map[string]any{"name": name}
		if services != nil {
			r["services"] = services
		}
		return r
	}
	st := parse(t, map[string]any{
		"#spec":       state.SpecSystem1,
		"device.json": map[string]any{"groups": []any{map[string]any{"name": "app"}}},
		"nm/run.json": map[string]any{"name": "nm", "exports": "services.json"},
		"nm/services.json": []any{
			map[string]any{"name": "bus", "type": "dbus", "socket": "/run/dbus/system_bus_socket"},
			map[string]any{"name": "web", "type": "http", "port": 8080},
		},
		"gpu/run.json":      map[string]any{"name": "gpu", "exports": "services.json"},
		"gpu/services.json": []any{map[string]any{"name": "bus", "type": "unix", "socket": "/run/other.sock"}},
		"app/run.json": run("app", map[string]any{
			"required": []any{map[string]any{"name": "bus", "type": "dbus", "role": "operator"}},
			"optional": []any{
				map[string]any{"name": "web", "target": "0.0.0.0:80"},
				map[string]any{"name": "nothing", "type": "unix"},
				map[string]any{"name": "bus", "type": "unix", "provider": "gpu", "target": "/run/gpu.sock"},
			},
		}),
	})
	got := Graph(st)
	want := []Link{
		{Consumer: "app", Provider: "nm", Name: "bus", Type: "dbus", Role: "operator", Socket: "/run/dbus/system_bus_socket", Required: true},
		{Consumer: "app", Provider: "nm", Name: "web", Type: "http", Role: DefaultRole, Target: "0.0.0.0:80", Port: 8080},
		// The optional "bus" of gpu is left out: app has its bus link.
	}
	if len(got) != len(want) {
		t.Fatalf("graph %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("link %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if e := got[0].ConsumerEnd(); e != "/tmp/pvx_app_bus.sock" {
		t.Errorf("default consumer end %q", e)
	}
}

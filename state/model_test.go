package state

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pantavisor/pv/internal/revtest"
)

func parseOK(t *testing.T, st map[string]any, opt Options) *State {
	t.Helper()
	s, err := Parse(encode(t, st), opt)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return s
}

func warningsAt(s *State) []string {
	var out []string
	for _, w := range s.Warnings {
		out = append(out, w.Where()+": "+w.Msg)
	}
	return out
}

func TestGroupAssignment(t *testing.T) {
	app := func(name string, extra map[string]any) map[string]any {
		m := map[string]any{"name": name}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name  string
		state map[string]any
		want  map[string]string // container → group
	}{
		{"default groups: first alphabetical to root, rest to platform", map[string]any{
			"#spec": SpecSystem1, "b/run.json": app("b", nil), "a/run.json": app("a", nil), "c/run.json": app("c", nil),
		}, map[string]string{"a": "root", "b": "platform", "c": "platform"}},
		{"default groups: root taken explicitly", map[string]any{
			"#spec": SpecSystem1, "b/run.json": app("b", map[string]any{"group": "root"}), "a/run.json": app("a", nil),
		}, map[string]string{"a": "platform", "b": "root"}},
		{"default groups: runlevel maps to group", map[string]any{
			"#spec": SpecSystem1, "a/run.json": app("a", map[string]any{"runlevel": "app"}), "b/run.json": app("b", nil),
		}, map[string]string{"a": "app", "b": "root"}},
		{"explicit groups: unassigned go to the last group", map[string]any{
			"#spec":       SpecSystem1,
			"device.json": map[string]any{"groups": []any{map[string]any{"name": "first"}, map[string]any{"name": "last"}}},
			"a/run.json":  app("a", nil), "b/run.json": app("b", map[string]any{"group": "first"}),
		}, map[string]string{"a": "last", "b": "first"}},
		{"legacy groups.json", map[string]any{
			"#spec":       SpecSystem1,
			"groups.json": []any{map[string]any{"name": "sys", "restart_policy": "system"}, map[string]any{"name": "apps"}},
			"a/run.json":  app("a", nil),
		}, map[string]string{"a": "apps"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := parseOK(t, revtest.WithRootVolumes(tc.state), Options{AppEngine: true})
			for name, group := range tc.want {
				c := s.Container(name)
				if c == nil {
					t.Fatalf("no container %s", name)
				}
				if c.Group != group {
					t.Errorf("%s in group %q, want %q", name, c.Group, group)
				}
				g := s.Group(group)
				if c.StatusGoal != g.StatusGoal || c.RestartPolicy != g.RestartPolicy {
					t.Errorf("%s did not inherit its group's goal/policy: %s/%s vs %s/%s", name, c.StatusGoal, c.RestartPolicy, g.StatusGoal, g.RestartPolicy)
				}
			}
		})
	}
}

// A group that declares no timeout gets PV_UPDATER_GOALS_TIMEOUT
// (Options.GroupTimeout), as upstream reads it; it was always 120 s, so a
// device that raised the key for slow containers still rolled back at 120.
func TestGroupTimeoutFromTheConfiguration(t *testing.T) {
	doc := map[string]any{
		"#spec": SpecSystem1,
		"device.json": map[string]any{"groups": []any{map[string]any{"name": "g"},
			map[string]any{"name": "own", "timeout": 45}}},
	}
	s := parseOK(t, doc, Options{AppEngine: true, GroupTimeout: 600})
	if g := s.Group("g"); g.Timeout != 600 || !g.TimeoutUnset {
		t.Errorf("timeout %d (unset %v), want the configured 600, marked as not its own", g.Timeout, g.TimeoutUnset)
	}
	if g := s.Group("own"); g.Timeout != 45 || g.TimeoutUnset {
		t.Errorf("a group's own timeout %d (unset %v), want 45, its own", g.Timeout, g.TimeoutUnset)
	}
}

func TestDefaults(t *testing.T) {
	s := parseOK(t, map[string]any{
		"#spec":           SpecSystem1,
		"device.json":     map[string]any{"groups": []any{map[string]any{"name": "g"}}},
		"a/run.json":      map[string]any{"name": "a", "root-volume": "root.squashfs"},
		"a/root.squashfs": sha2,
	}, Options{AppEngine: true})
	g := s.Group("g")
	if g.StatusGoal != GoalStarted || g.RestartPolicy != RestartContainer || g.Timeout != DefaultGroupTimeout {
		t.Errorf("group defaults: %+v", g)
	}
	a := s.Container("a")
	if len(a.Roles) != 1 || a.Roles[0] != "mgmt" || !a.AutoModFW || a.AutoRecovery.Policy != RecoveryNo || a.HasAutoRecovery || a.Network != nil {
		t.Errorf("container defaults: %+v", a)
	}
}

func TestAliasesWarn(t *testing.T) {
	st := baseState()
	w := doc(st, "web/run.json")
	w["auto_recovery"] = map[string]any{"type": "always", "maximum_retry_count": 3}
	n := w["network"].(map[string]any)
	delete(n, "ip")
	n["static_ip"] = "10.0.5.20/24"
	w["restart_polcy"] = "container"
	s := parseOK(t, st, Options{})
	web := s.Container("web")
	if web.AutoRecovery.Policy != RecoveryAlways || web.AutoRecovery.MaxRetries != 3 || web.Network.IP.String() != "10.0.5.20" {
		t.Errorf("aliases not applied: %+v %+v", web.AutoRecovery, web.Network)
	}
	got := strings.Join(warningsAt(s), "\n")
	for _, want := range []string{
		"web/run.json: auto_recovery.type: accepted as an alias of policy",
		"web/run.json: auto_recovery.maximum_retry_count: accepted as an alias of max_retries",
		"web/run.json: network.static_ip: accepted as an alias of ip",
		"web/run.json: restart_polcy: unknown key, ignored",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing warning %q in:\n%s", want, got)
		}
	}
}

func TestServicesJSONShapes(t *testing.T) {
	st := baseState()
	st["web/services.json"] = []any{map[string]any{"name": "web-http", "type": "tcp", "port": 80}, map[string]any{"name": "api", "type": "unix", "socket": "/run/api.sock"}}
	s := parseOK(t, st, Options{})
	if got := s.Container("web").Exports; len(got) != 2 || got[1].Socket != "/run/api.sock" || got[0].Port != 80 {
		t.Errorf("bare-array services.json: %+v", got)
	}
}

func TestIngressAddresses(t *testing.T) {
	s := parseOK(t, baseState(), Options{})
	if r := s.Ingress[0]; r.Addr.String() != "0.0.0.0:8080" || r.Prefix != "" {
		t.Errorf("tcp ingress: %+v", r)
	}
	if r := s.Ingress[1]; r.Addr.String() != "0.0.0.0:80" || r.Prefix != "/api" {
		t.Errorf("http ingress: %+v", r)
	}
	for ext, want := range map[string]string{":80": "/", ":80/": "/", ":80/api/": "/api", "10.0.0.1:80/a/b/": "/a/b"} {
		if _, prefix, msg := parseExternal(ext, true); msg != "" || prefix != want {
			t.Errorf("%q: prefix %q (%s), want %q as the router cleans it", ext, prefix, msg, want)
		}
	}
}

// TestFixturesRoundTrip derives what GET /containers and /groups must show
// for every upstream fixture straight from its raw JSON (a generic decode,
// applying upstream's documented defaults), and compares it with the views
// built from the parsed model after a JSON round trip.
func TestFixturesRoundTrip(t *testing.T) {
	for _, f := range fixtureFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			st, err := Parse(data, Options{AppEngine: true})
			if err != nil {
				t.Fatal(err)
			}
			var raw map[string]any
			if err := json.Unmarshal(data, &raw); err != nil {
				t.Fatal(err)
			}
			wantGroups := expectedGroups(raw)
			var gotGroups []GroupView
			roundTrip(t, st.GroupViews(), &gotGroups)
			if g, w := mustJSON(t, gotGroups), mustJSON(t, wantGroups); g != w {
				t.Errorf("groups:\n got %s\nwant %s", g, w)
			}
			want := expectedContainers(raw, wantGroups)
			var got []ContainerView
			roundTrip(t, st.ContainerViews(), &got)
			if len(got) != len(want) {
				t.Fatalf("%d containers, want %d", len(got), len(want))
			}
			for i := range want {
				g, w := got[i], want[i]
				if g.Name != w.Name || g.Group != w.Group || g.StatusGoal != w.StatusGoal ||
					g.RestartPolicy != w.RestartPolicy || mustJSON(t, g.Roles) != mustJSON(t, w.Roles) ||
					g.AutoRecovery != w.AutoRecovery {
					t.Errorf("container %d:\n got %s\nwant %s", i, mustJSON(t, g), mustJSON(t, w))
				}
			}
		})
	}
}

func roundTrip(t *testing.T, in, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// expectedGroups applies upstream's rules to the raw document: device.json
// groups, else groups.json, else the four defaults.
func expectedGroups(raw map[string]any) []GroupView {
	var list []any
	if d, ok := raw["device.json"].(map[string]any); ok {
		list, _ = d["groups"].([]any)
	} else if g, ok := raw["groups.json"].([]any); ok {
		list = g
	} else {
		return []GroupView{
			{"data", GoalMounted, RestartSystem, 30}, {"root", GoalStarted, RestartSystem, 30},
			{"platform", GoalStarted, RestartSystem, 30}, {"app", GoalStarted, RestartContainer, 30},
		}
	}
	var out []GroupView
	for _, it := range list {
		m := it.(map[string]any)
		g := GroupView{Name: m["name"].(string), StatusGoal: GoalStarted, RestartPolicy: RestartContainer, Timeout: DefaultGroupTimeout}
		if s, ok := m["status_goal"].(string); ok {
			g.StatusGoal = Goal(s)
		}
		if s, ok := m["restart_policy"].(string); ok {
			g.RestartPolicy = RestartPolicy(s)
		}
		if n, ok := m["timeout"].(float64); ok {
			g.Timeout = int(n)
		}
		out = append(out, g)
	}
	return out
}

func expectedContainers(raw map[string]any, groups []GroupView) []ContainerView {
	_, hasDevice := raw["device.json"]
	_, hasGroups := raw["groups.json"]
	runlevels := !hasDevice && !hasGroups
	var names []string
	for k := range raw {
		if dir, ok := strings.CutSuffix(k, "/run.json"); ok && !strings.Contains(dir, "/") && dir != "bsp" {
			names = append(names, dir)
		}
	}
	sort.Strings(names)
	groupOf := func(name string) GroupView {
		for _, g := range groups {
			if g.Name == name {
				return g
			}
		}
		panic("no group " + name)
	}
	rootTaken := false
	for _, n := range names {
		if g, _ := raw[n+"/run.json"].(map[string]any)["group"].(string); g == "root" {
			rootTaken = true
		}
	}
	var out []ContainerView
	for _, n := range names {
		m := raw[n+"/run.json"].(map[string]any)
		v := ContainerView{Name: n, Roles: []string{"mgmt"}, AutoRecovery: AutoRecoveryView{Type: RecoveryNo}}
		if g, ok := m["group"].(string); ok {
			v.Group = g
		} else if runlevels && !rootTaken {
			v.Group, rootTaken = "root", true
		} else if runlevels {
			v.Group = "platform"
		} else {
			v.Group = groups[len(groups)-1].Name
		}
		g := groupOf(v.Group)
		v.StatusGoal, v.RestartPolicy = g.StatusGoal, g.RestartPolicy
		if s, ok := m["status_goal"].(string); ok {
			v.StatusGoal = Goal(s)
		}
		if s, ok := m["restart_policy"].(string); ok {
			v.RestartPolicy = RestartPolicy(s)
		}
		if rs, ok := m["roles"].([]any); ok {
			v.Roles = []string{}
			for _, r := range rs {
				if r == "mgmt" {
					v.Roles = append(v.Roles, "mgmt")
				}
			}
		}
		if ar, ok := m["auto_recovery"].(map[string]any); ok {
			v.AutoRecovery.Type = RecoveryPolicy(ar["policy"].(string))
		}
		out = append(out, v)
	}
	return out
}

// Upstream copies a logs value's token text (pv_json_get_one_str): a
// number or boolean is taken as its text, as pvr and users write them.
func TestLogsTakeScalarsAsText(t *testing.T) {
	st := baseState()
	doc(st, "web/run.json")["logs"] = []any{map[string]any{"file": "/var/log/app.log", "maxsize": 2097152, "truncate": true, "lines": json.Number("1e3")}}
	s := parseOK(t, st, Options{})
	want := map[string]string{"file": "/var/log/app.log", "maxsize": "2097152", "truncate": "true", "lines": "1e3"}
	if got := s.Container("web").Logs; len(got) != 1 || !maps.Equal(got[0], want) {
		t.Errorf("logs %v, want %v", got, want)
	}
	doc(st, "web/run.json")["logs"] = []any{map[string]any{"file": "/var/log/app.log", "opts": map[string]any{"a": 1}}}
	_, err := Parse(encode(t, st), Options{})
	if p := Problems(err); len(p) != 1 || p[0].Where() != "web/run.json: logs[0].opts" {
		t.Errorf("a nested object in logs: %v, want one error at web/run.json: logs[0].opts", err)
	}
}

// Upstream files any .json key whose value is not a sha256 as an inline
// JSON document (system1_parse_objects), a JSON scalar or a plain string
// too; a key without .json must still name an object.
func TestInlineJSONScalars(t *testing.T) {
	for _, v := range []any{true, 42, "plain text", nil} {
		st := baseState()
		st["_config/web/etc/flag.json"] = v
		s, err := Parse(encode(t, st), Options{})
		if err != nil {
			t.Errorf("value %#v: %v", v, err)
			continue
		}
		if got, want := string(s.JSONs["_config/web/etc/flag.json"]), mustJSON(t, v); got != want {
			t.Errorf("value %#v filed as %q, want the document %q", v, got, want)
		}
	}
	st := baseState()
	st["_config/web/etc/flag"] = true
	if _, err := Parse(encode(t, st), Options{}); len(Problems(err)) != 1 {
		t.Errorf("a scalar under a key without .json: %v, want one error", err)
	}
}

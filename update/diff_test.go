package update

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pantavisor/pv/internal/revtest"
	"github.com/pantavisor/pv/spec"
	"github.com/pantavisor/pv/state"
)

const (
	shaA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

type doc map[string]any

// baseDoc is a revision with a system container os and two
// container-policy containers web and db, each with a root object, and
// web with a config object and an inline JSON.
func baseDoc() doc {
	d := doc{
		"#spec": state.SpecSystem1,
		"device.json": map[string]any{"groups": []any{
			map[string]any{"name": "sys", "status_goal": "STARTED", "restart_policy": "system", "timeout": 30},
			map[string]any{"name": "app", "status_goal": "STARTED", "restart_policy": "container", "timeout": 30},
			map[string]any{"name": "app2", "status_goal": "STARTED", "restart_policy": "container", "timeout": 30},
		}},
		"_config/web/etc/web.conf": shaA,
		"web/extra.json":           map[string]any{"port": 80},
	}
	for name, group := range map[string]string{"os": "sys", "web": "app", "db": "app"} {
		d[name+"/run.json"] = runJSONDoc(name, group)
		d[name+"/root.squashfs"] = shaA
	}
	return d
}

func runJSONDoc(name, group string) map[string]any {
	return map[string]any{"name": name, "group": group, "auto_recovery": map[string]any{"policy": "no"}}
}

func parseDoc(t *testing.T, d doc) *state.State {
	t.Helper()
	data, err := json.Marshal(revtest.WithRootVolumes(d))
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Parse(data, state.Options{AppEngine: true})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return st
}

func TestDiff(t *testing.T) {
	all := []string{"db", "os", "web"}
	tests := []struct {
		name string
		// edit changes the base document into the next revision.
		edit       func(d doc)
		want       Transition // Reason is checked by wantReason
		wantReason string     // a substring of Reason
	}{
		{
			name: "identical", edit: func(doc) {},
			want:       Transition{Keep: all},
			wantReason: "no container changed",
		},
		{
			// Upstream NONREBOOT: only the changed platform is stopped.
			name: "container object", edit: func(d doc) { d["web/root.squashfs"] = shaB },
			want:       Transition{Stop: []string{"web"}, Start: []string{"web"}, Keep: []string{"db", "os"}},
			wantReason: "web (web/root.squashfs changed)",
		},
		{
			name: "container config object", edit: func(d doc) { d["_config/web/etc/web.conf"] = shaB },
			want:       Transition{Stop: []string{"web"}, Start: []string{"web"}, Keep: []string{"db", "os"}},
			wantReason: "_config/web/etc/web.conf changed",
		},
		{
			name: "container config object added", edit: func(d doc) { d["_config/db/etc/db.conf"] = shaB },
			want:       Transition{Stop: []string{"db"}, Start: []string{"db"}, Keep: []string{"os", "web"}},
			wantReason: "_config/db/etc/db.conf added",
		},
		{
			name: "container inline json", edit: func(d doc) { d["web/extra.json"] = map[string]any{"port": 81} },
			want:       Transition{Stop: []string{"web"}, Start: []string{"web"}, Keep: []string{"db", "os"}},
			wantReason: "web/extra.json changed",
		},
		{
			name: "container inline json removed", edit: func(d doc) { delete(d, "web/extra.json") },
			want:       Transition{Stop: []string{"web"}, Start: []string{"web"}, Keep: []string{"db", "os"}},
			wantReason: "web/extra.json removed",
		},
		{
			name: "container run.json", edit: func(d doc) {
				r := runJSONDoc("db", "app")
				r["auto_recovery"] = map[string]any{"policy": "always"}
				d["db/run.json"] = r
			},
			want:       Transition{Stop: []string{"db"}, Start: []string{"db"}, Keep: []string{"os", "web"}},
			wantReason: "db (run.json changed)",
		},
		{
			name: "container services.json", edit: func(d doc) {
				d["web/services.json"] = []any{map[string]any{"name": "http", "type": "tcp", "port": 80}}
			},
			want:       Transition{Stop: []string{"web"}, Start: []string{"web"}, Keep: []string{"db", "os"}},
			wantReason: "web (services.json changed)",
		},
		{
			name: "container group", edit: func(d doc) { d["db/run.json"] = runJSONDoc("db", "app2") },
			want:       Transition{Stop: []string{"db"}, Start: []string{"db"}, Keep: []string{"os", "web"}},
			wantReason: "group app → app2",
		},
		{
			name: "container added", edit: func(d doc) {
				d["ui/run.json"] = runJSONDoc("ui", "app")
				d["ui/root.squashfs"] = shaB
			},
			want:       Transition{Start: []string{"ui"}, Keep: all},
			wantReason: "ui (added)",
		},
		{
			name: "container removed", edit: func(d doc) {
				delete(d, "db/run.json")
				delete(d, "db/root.squashfs")
			},
			want:       Transition{Stop: []string{"db"}, Keep: []string{"os", "web"}},
			wantReason: "db (removed)",
		},
		{
			name: "two containers", edit: func(d doc) {
				d["web/root.squashfs"] = shaB
				d["db/root.squashfs"] = shaB
			},
			want:       Transition{Stop: []string{"db", "web"}, Start: []string{"db", "web"}, Keep: []string{"os"}},
			wantReason: "db (db/root.squashfs changed), web (web/root.squashfs changed)",
		},
		{
			// Upstream REBOOT: a change to a system platform.
			name: "system container object", edit: func(d doc) { d["os/root.squashfs"] = shaB },
			want:       Transition{Reboot: true, Stop: all, Start: all},
			wantReason: "system container os changed: os/root.squashfs changed",
		},
		{
			name: "system container added", edit: func(d doc) {
				d["net/run.json"] = runJSONDoc("net", "sys")
			},
			want:       Transition{Reboot: true, Stop: all, Start: []string{"db", "net", "os", "web"}},
			wantReason: "system container net changed: added",
		},
		{
			name: "system container removed", edit: func(d doc) {
				delete(d, "os/run.json")
				delete(d, "os/root.squashfs")
			},
			want:       Transition{Reboot: true, Stop: all, Start: []string{"db", "web"}},
			wantReason: "system container os changed: removed",
		},
		{
			// System in the next revision only: its own restart_policy.
			name: "container becomes system", edit: func(d doc) {
				r := runJSONDoc("db", "app")
				r["restart_policy"] = "system"
				d["db/run.json"] = r
			},
			want:       Transition{Reboot: true, Stop: all, Start: all},
			wantReason: "system container db changed: run.json changed",
		},
		{
			// System in the current revision only: moved out of sys.
			name: "system container leaves its group", edit: func(d doc) { d["os/run.json"] = runJSONDoc("os", "app") },
			want:       Transition{Reboot: true, Stop: all, Start: all},
			wantReason: "system container os changed: group sys → app",
		},
		{
			// Ours, stricter than upstream: device.json changes reboot.
			name: "group definition", edit: func(d doc) {
				dev := d["device.json"].(map[string]any)
				groups := dev["groups"].([]any)
				groups[2] = map[string]any{"name": "app2", "status_goal": "STARTED", "restart_policy": "container", "timeout": 60}
			},
			want:       Transition{Reboot: true, Stop: all, Start: all},
			wantReason: "device.json changed: groups",
		},
		{
			name: "network pool", edit: func(d doc) {
				d["device.json"].(map[string]any)["network"] = map[string]any{"pools": map[string]any{
					"internal": map[string]any{"type": "bridge", "bridge": "pvbr0", "subnet": "10.0.5.0/24", "gateway": "10.0.5.1"},
				}}
			},
			want:       Transition{Reboot: true, Stop: all, Start: all},
			wantReason: "device.json changed: network pools",
		},
		{
			// Upstream REBOOT: a BSP change (its objects, even in appengine
			// mode where bsp/run.json itself is not read).
			name: "bsp object", edit: func(d doc) { d["bsp/kernel.img"] = shaB },
			want:       Transition{Reboot: true, Stop: all, Start: all},
			wantReason: "bsp/kernel.img added",
		},
		{
			// The parser gives _config of no container to the BSP.
			name: "config of no container", edit: func(d doc) { d["_config/ghost/x.conf"] = shaB },
			want:       Transition{Reboot: true, Stop: all, Start: all},
			wantReason: "_config/ghost/x.conf added",
		},
		{
			name: "top-level json", edit: func(d doc) { d["extra.json"] = map[string]any{"a": 1} },
			want:       Transition{Reboot: true, Stop: all, Start: all},
			wantReason: "extra.json added",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := parseDoc(t, baseDoc())
			d := baseDoc()
			tt.edit(d)
			next := parseDoc(t, d)
			got := Diff(cur, next)
			checkTransition(t, got, tt.want, tt.wantReason)
			checkCovers(t, got, cur, next)
		})
	}
}

func checkTransition(t *testing.T, got, want Transition, reason string) {
	t.Helper()
	if !strings.Contains(got.Reason, reason) {
		t.Errorf("reason %q, want it to hold %q", got.Reason, reason)
	}
	got.Reason = ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("transition\n got %+v\nwant %+v", got, want)
	}
}

// checkCovers checks that a transition accounts for every container once:
// each one of cur is stopped or kept, each one of next started or kept.
func checkCovers(t *testing.T, tr Transition, cur, next *state.State) {
	t.Helper()
	sorted := func(a, b []string) []string {
		out := append(append([]string{}, a...), b...)
		slices.Sort(out)
		return out
	}
	if got := sorted(tr.Stop, tr.Keep); !slices.Equal(got, names(cur)) {
		t.Errorf("stop+keep = %v, want the current containers %v", got, names(cur))
	}
	if got := sorted(tr.Start, tr.Keep); !slices.Equal(got, names(next)) {
		t.Errorf("start+keep = %v, want the next containers %v", got, names(next))
	}
}

// TestDiffBuiltStates covers what a map document cannot: the BSP of an
// embedded state and the absence of a running revision.
func TestDiffBuiltStates(t *testing.T) {
	all := []string{"db", "os", "web"}
	base := parseDoc(t, baseDoc())
	withBSP := func(linux string) *state.State {
		st := *parseDoc(t, baseDoc())
		st.BSP = &state.BSP{Linux: linux}
		return &st
	}
	withDrivers := func(module string) *state.State {
		st := *parseDoc(t, baseDoc())
		st.Drivers = &state.Drivers{Sections: map[string]map[string][]string{"all": {"wifi": {module}}}}
		return &st
	}
	withLXC := *parseDoc(t, baseDoc())
	withLXC.Containers = nil
	for _, c := range base.Containers {
		cc := *c
		cc.LXC = nil
		if c.Name == "web" {
			cc.LXC = &spec.Container{}
		}
		withLXC.Containers = append(withLXC.Containers, &cc)
	}
	tests := []struct {
		name       string
		cur, next  *state.State
		want       Transition
		wantReason string
	}{
		{"bsp run.json", withBSP("kernel-1"), withBSP("kernel-2"), Transition{Reboot: true, Stop: all, Start: all}, "bsp/run.json changed"},
		{"same bsp", withBSP("kernel-1"), withBSP("kernel-1"), Transition{Keep: all}, "no container changed"},
		{"bsp drivers.json", withDrivers("a"), withDrivers("b"), Transition{Reboot: true, Stop: all, Start: all}, "bsp/drivers.json changed"},
		{"first revision", nil, base, Transition{Reboot: true, Start: all}, "no revision running"},
		{"no next revision", base, nil, Transition{Reboot: true, Stop: all}, "device.json changed"},
		// The translated LXC config comes from an object, compared as such,
		// and is present only in a state loaded from its trail.
		{"lxc config loaded on one side", base, &withLXC, Transition{Keep: all}, "no container changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkTransition(t, Diff(tt.cur, tt.next), tt.want, tt.wantReason)
		})
	}
}

func TestOwnerOf(t *testing.T) {
	tests := []struct{ key, want string }{
		{"web/root.squashfs", "web"},
		{"web/etc/x.json", "web"},
		{"_config/web/etc/x.conf", "web"},
		{"_config/web", ""},
		{"bsp/kernel.img", ""},
		{"device.json", ""},
	}
	for _, tt := range tests {
		if got := ownerOf(tt.key); got != tt.want {
			t.Errorf("ownerOf(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

// A changed container whose new static address a kept container may hold
// as its dynamic lease (sticky while it runs) makes the update a reboot:
// handed over, the kept lease won and the changed container could not
// start, failing a valid update. A container keeping its own static
// address, or a pool with no kept dynamic container, is no reason.
func TestDiffStaticOverKeptDynamic(t *testing.T) {
	pooled := func(ips map[string]string) doc {
		d := doc{
			"#spec": state.SpecSystem1,
			"device.json": map[string]any{
				"groups": []any{map[string]any{"name": "app", "status_goal": "STARTED", "restart_policy": "container", "timeout": 30}},
				"network": map[string]any{"pools": map[string]any{
					"lan": map[string]any{"bridge": "pvbr0", "subnet": "10.0.5.0/29", "gateway": "10.0.5.1"}}},
			},
		}
		for name, ip := range ips {
			r := runJSONDoc(name, "app")
			n := map[string]any{"pool": "lan"}
			if ip != "" {
				n["ip"] = ip
			}
			r["network"] = n
			d[name+"/run.json"] = r
		}
		return d
	}
	for _, c := range []struct {
		name      string
		cur, next map[string]string
		reboot    bool
	}{
		{"new static, kept dynamic", map[string]string{"d0": ""}, map[string]string{"d0": "", "new": "10.0.5.2"}, true},
		{"dynamic turned static, kept dynamic", map[string]string{"d0": "", "d1": ""}, map[string]string{"d0": "", "d1": "10.0.5.3"}, true},
		{"own static kept", map[string]string{"d0": "", "s": "10.0.5.4"}, map[string]string{"d0": "", "s": "10.0.5.4", "new": ""}, false},
		{"new static, kept static only", map[string]string{"s": "10.0.5.4"}, map[string]string{"s": "10.0.5.4", "new": "10.0.5.2"}, false},
		{"a removed container's static, kept dynamic", map[string]string{"d0": "", "old": "10.0.5.6"}, map[string]string{"d0": "", "new": "10.0.5.6"}, false},
	} {
		tr := Diff(parseDoc(t, pooled(c.cur)), parseDoc(t, pooled(c.next)))
		if tr.Reboot != c.reboot {
			t.Errorf("%s: reboot %v (%s), want %v", c.name, tr.Reboot, tr.Reason, c.reboot)
		}
		if c.reboot && !strings.Contains(tr.Reason, "may hold as its dynamic lease") {
			t.Errorf("%s: reason %q", c.name, tr.Reason)
		}
	}
}

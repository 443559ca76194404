package update

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/pantavisor/pv/state"
)

// Transition is how the running revision gives way to the next one.
type Transition struct {
	// Reboot says the whole device must restart into the next revision
	// (in appengine mode: a full teardown and re-exec).
	Reboot bool
	// Reason says in words what forced a reboot, naming the container or
	// state key; for a non-reboot transition it lists what is swapped.
	Reason string
	// Stop are the containers of the current revision to stop, Start
	// those of the next one to start, sorted. With Reboot: all of them.
	Stop, Start []string
	// Keep are the containers that did not change: they are taken over by
	// the next revision without a restart. Empty with Reboot.
	Keep []string
}

// Diff decides between a reboot and a non-reboot transition from the
// running revision cur to next, as upstream's pv_run_update does: a
// change to the BSP or to a system container needs a reboot; otherwise
// only the changed containers are stopped and started (SPEC §4: "only
// changed container-policy containers are swapped"). With no running
// revision (cur nil) it is a reboot that starts all of next.
//
// A container changed when it was added or removed, when its group
// changed, when its run.json or services.json reads differently, or when
// any state key it owns ("<name>/..." and "_config/<name>/...": objects
// by sha256, inline JSON documents by content) was added, removed or
// changed. A changed container whose restart_policy is system in either
// revision forces a reboot: stopping a system container alone is what
// upstream never does, and its failure would be a device failure anyway.
//
// Deliberately stricter than upstream, whose comparison (reference §3.4)
// looks at the BSP and the platforms only: any change to what device.json declares (groups, disks,
// volumes, network pools, ingress) reboots too. Groups order and govern
// every container; pools, disks and volumes are set up once for the
// whole revision before any container starts (upstream's
// pv_ipam_setup_bridges runs once per RUN). Kept containers would
// otherwise run against a device set-up that the next revision no longer
// declares. The same goes for state keys that belong to no container
// (bsp/..., _config of no container): they are the BSP's.
func Diff(cur, next *state.State) Transition {
	if cur == nil {
		return Transition{Reboot: true, Reason: "no revision running", Start: names(orEmpty(next))}
	}
	next = orEmpty(next)
	changes := containerChanges(cur, next)
	if reason := rebootReason(cur, next, changes); reason != "" {
		return Transition{Reboot: true, Reason: reason, Stop: names(cur), Start: names(next)}
	}
	return swap(cur, next, changes)
}

// swap is the non-reboot transition: stop and start the changed
// containers, keep the others.
func swap(cur, next *state.State, changes map[string]string) Transition {
	var t Transition
	for _, c := range cur.Containers {
		if _, changed := changes[c.Name]; changed {
			t.Stop = append(t.Stop, c.Name)
		} else {
			t.Keep = append(t.Keep, c.Name)
		}
	}
	for _, c := range next.Containers {
		if _, changed := changes[c.Name]; changed {
			t.Start = append(t.Start, c.Name)
		}
	}
	// Containers come sorted from the parser; sorting again keeps the
	// promise for states built otherwise.
	slices.Sort(t.Stop)
	slices.Sort(t.Start)
	slices.Sort(t.Keep)
	if len(changes) == 0 {
		t.Reason = "no container changed"
		return t
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(changes)) {
		parts = append(parts, fmt.Sprintf("%s (%s)", name, changes[name]))
	}
	t.Reason = "containers changed: " + strings.Join(parts, ", ")
	return t
}

// rebootReason returns why going from cur to next needs a reboot, "" when
// it does not. The first reason found is given, in a fixed order: BSP,
// device.json, keys of no container, then containers by name.
func rebootReason(cur, next *state.State, changes map[string]string) string {
	if !reflect.DeepEqual(cur.BSP, next.BSP) {
		return "bsp/run.json changed"
	}
	if !reflect.DeepEqual(cur.Drivers, next.Drivers) {
		return "bsp/drivers.json changed"
	}
	if what := deviceChange(cur, next); what != "" {
		return "device.json changed: " + what
	}
	owned := containerNames(cur, next)
	for _, k := range changedKeys(keyContents(cur), keyContents(next)) {
		if !owned[ownerOf(k.key)] {
			return fmt.Sprintf("%s %s (a key of no container: the BSP's)", k.key, k.how)
		}
	}
	curBy, nextBy := byName(cur), byName(next)
	for _, name := range slices.Sorted(maps.Keys(changes)) {
		if isSystem(curBy[name]) || isSystem(nextBy[name]) {
			return fmt.Sprintf("system container %s changed: %s", name, changes[name])
		}
	}
	if why := staticOverKeptDynamic(cur, next, changes); why != "" {
		return why
	}
	return ""
}

// staticOverKeptDynamic names a changed container of next whose static
// address a kept container may hold: one that runs on a dynamic lease of
// the same pool, sticky for as long as it runs. Handed over, that lease
// wins and the changed container cannot start, failing a valid update;
// booted, static addresses are reserved before any dynamic request (the
// pool's settle), so a reboot gives each its own. An address static in
// cur is safe: reserved for its owner since it became static (at a boot,
// or at an update this rule let through), no dynamic lease can hold it,
// and the handover frees it when its owner goes.
func staticOverKeptDynamic(cur, next *state.State, changes map[string]string) string {
	static := map[string]bool{}
	// The first kept container (in state order) on a dynamic lease of
	// each pool.
	dynamic := map[string]string{}
	for _, c := range cur.Containers {
		n := c.Network
		if n == nil || n.Mode != state.NetPool {
			continue
		}
		if n.IP.IsValid() {
			static[n.Pool+" "+n.IP.String()] = true
		} else if _, changed := changes[c.Name]; !changed {
			if _, ok := dynamic[n.Pool]; !ok {
				dynamic[n.Pool] = c.Name
			}
		}
	}
	nextBy := byName(next)
	for _, name := range slices.Sorted(maps.Keys(changes)) {
		c := nextBy[name]
		if c == nil || c.Network == nil || c.Network.Mode != state.NetPool || !c.Network.IP.IsValid() ||
			static[c.Network.Pool+" "+c.Network.IP.String()] {
			continue
		}
		if k, ok := dynamic[c.Network.Pool]; ok {
			return fmt.Sprintf("container %s takes the static address %s on pool %s, which kept container %s may hold as its dynamic lease",
				name, c.Network.IP, c.Network.Pool, k)
		}
	}
	return ""
}

func isSystem(c *state.Container) bool {
	return c != nil && c.RestartPolicy == state.RestartSystem
}

// deviceChange names the first part of device.json (or of the legacy
// groups.json and disks.json it replaces) that differs, "" when none.
// The source of the groups (device.json, groups.json or the defaults)
// does not count, only what they say.
func deviceChange(cur, next *state.State) string {
	parts := []struct {
		what string
		a, b any
	}{
		{"groups", cur.Groups, next.Groups},
		{"disks", cur.Disks, next.Disks},
		{"volumes", cur.Volumes, next.Volumes},
		{"network pools", cur.Pools, next.Pools},
		{"ingress", cur.Ingress, next.Ingress},
	}
	for _, p := range parts {
		if !sameValue(p.a, p.b) {
			return p.what
		}
	}
	return ""
}

// sameValue is reflect.DeepEqual where an empty slice or map equals nil:
// an absent list and an empty one declare the same thing.
func sameValue(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if va.Kind() == vb.Kind() && (va.Kind() == reflect.Slice || va.Kind() == reflect.Map) && va.Len() == 0 && vb.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// containerChanges returns, for every container that changed between cur
// and next, what changed. Unchanged containers are absent.
func containerChanges(cur, next *state.State) map[string]string {
	changes := map[string]string{}
	curBy, nextBy := byName(cur), byName(next)
	for name := range containerNames(cur, next) {
		if why := containerChange(curBy[name], nextBy[name]); why != "" {
			changes[name] = why
		}
	}
	curKeys, nextKeys := keyContents(cur), keyContents(next)
	for _, k := range changedKeys(curKeys, nextKeys) {
		name := ownerOf(k.key)
		if _, seen := changes[name]; !seen && (curBy[name] != nil || nextBy[name] != nil) {
			changes[name] = k.key + " " + k.how
		}
	}
	return changes
}

// containerChange says what differs between a container's two versions
// (nil where it is absent; never both) apart from its state keys; ""
// when nothing.
func containerChange(a, b *state.Container) string {
	switch {
	case a == nil:
		return "added"
	case b == nil:
		return "removed"
	case a.Group != b.Group:
		return fmt.Sprintf("group %s → %s", a.Group, b.Group)
	case !reflect.DeepEqual(runJSON(a), runJSON(b)):
		return "run.json changed"
	case !sameValue(a.Exports, b.Exports):
		return "services.json changed"
	}
	return ""
}

// runJSON is what a container's run.json declares: the container without
// its group (compared on its own), its exports (services.json), its
// objects and inline documents (compared as state keys) and its
// translated LXC config (derived from an object, and present only when
// the state was loaded from a trail).
func runJSON(c *state.Container) state.Container {
	d := *c
	d.Group, d.Exports, d.Objects, d.JSONs, d.LXC = "", nil, nil, nil, nil
	return d
}

// keyContents maps every object and inline JSON key of st to a string
// that is equal exactly when the content is: the sha256 of an object, the
// compacted text of a JSON document.
func keyContents(st *state.State) map[string]string {
	m := make(map[string]string, len(st.Objects)+len(st.JSONs))
	for k, sha := range st.Objects {
		m[k] = "object " + sha
	}
	for k, raw := range st.JSONs {
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			buf.Reset()
			buf.Write(raw) // parsed states hold valid JSON; compare as is otherwise
		}
		m[k] = "json " + buf.String()
	}
	return m
}

type keyChange struct{ key, how string }

// changedKeys lists the keys added, removed or changed from a to b, sorted.
func changedKeys(a, b map[string]string) []keyChange {
	var out []keyChange
	all := maps.Clone(a)
	maps.Copy(all, b)
	for _, k := range slices.Sorted(maps.Keys(all)) {
		va, inA := a[k]
		vb, inB := b[k]
		switch {
		case !inA:
			out = append(out, keyChange{k, "added"})
		case !inB:
			out = append(out, keyChange{k, "removed"})
		case va != vb:
			out = append(out, keyChange{k, "changed"})
		}
	}
	return out
}

// ownerOf returns the container a state key belongs to, as the state
// parser attaches them: "<name>/..." and "_config/<name>/..." are
// <name>'s; "bsp/..." and top-level keys are no container's ("").
func ownerOf(key string) string {
	first, rest, ok := strings.Cut(key, "/")
	if !ok || first == "bsp" {
		return ""
	}
	if first == "_config" {
		name, _, ok := strings.Cut(rest, "/")
		if !ok {
			return ""
		}
		return name
	}
	return first
}

// byName is st.Container as a map, the first container of each name:
// Diff runs in root's Receive, where a lookup that scans the list for
// every container of two large states held root for seconds.
func byName(st *state.State) map[string]*state.Container {
	m := make(map[string]*state.Container, len(st.Containers))
	for i := len(st.Containers) - 1; i >= 0; i-- {
		m[st.Containers[i].Name] = st.Containers[i]
	}
	return m
}

// containerNames is the set of container names of either state.
func containerNames(cur, next *state.State) map[string]bool {
	set := map[string]bool{}
	for _, st := range []*state.State{cur, next} {
		for _, c := range st.Containers {
			set[c.Name] = true
		}
	}
	return set
}

// names returns the container names of st, sorted (Containers is sorted
// by name already; this does not rely on it).
func names(st *state.State) []string {
	var out []string
	for _, c := range st.Containers {
		out = append(out, c.Name)
	}
	slices.Sort(out)
	return out
}

func orEmpty(st *state.State) *state.State {
	if st == nil {
		return &state.State{}
	}
	return st
}

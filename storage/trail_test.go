package storage

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// stateJSON is a state whose keys name the given objects (key -> sha), with
// one inline document.
func stateJSON(t testing.TB, objects map[string]string) []byte {
	t.Helper()
	st := map[string]any{
		"#spec":        "pantavisor-service-system@1",
		"device.json":  map[string]any{"groups": []any{map[string]any{"name": "app"}}},
		"app/run.json": map[string]any{"name": "app", "type": "lxc"},
	}
	for k, v := range objects {
		st[k] = v
	}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// install puts each content as an object and installs rev referring to them
// by key; it returns the state.
func install(t testing.TB, l Layout, rev string, files map[string]string) []byte {
	t.Helper()
	objs := map[string]string{}
	for key, content := range files {
		objs[key] = put(t, l, content)
	}
	data := stateJSON(t, objs)
	if err := l.InstallTrail(rev, data, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	return data
}

func TestInstallTrail(t *testing.T) {
	l := newLayout(t)
	files := map[string]string{"app/root.squashfs": "rootfs", "app/lxc.container.conf": "conf", "bsp/kernel.img": "rootfs"}
	objs := map[string]string{}
	for key, content := range files {
		objs[key] = put(t, l, content)
	}
	data := stateJSON(t, objs)
	p := NewProgress(StatusNew, MsgInstalled)
	if err := l.InstallTrail("locals/dev", data, InstallOptions{Progress: &p, CommitMsg: "first"}); err != nil {
		t.Fatal(err)
	}
	dir := l.Trail("locals/dev")
	if got, err := os.ReadFile(filepath.Join(dir, TrailJSON)); err != nil || string(got) != string(data) {
		t.Fatalf(".pvr/json = %q, %v", got, err)
	}
	var cfg map[string]string
	if b, err := os.ReadFile(filepath.Join(dir, TrailConfig)); err != nil || json.Unmarshal(b, &cfg) != nil || cfg["ObjectsDir"] != l.Objects() {
		t.Fatalf(".pvr/config = %s, %v", b, err)
	}
	for key, sha := range objs {
		linked, err := os.Stat(filepath.Join(dir, key))
		if err != nil {
			t.Fatal(err)
		}
		stored, err := os.Stat(l.Object(sha))
		if err != nil || !os.SameFile(linked, stored) {
			t.Errorf("%s is not a hard link to its object", key)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "app/run.json")); err != nil || string(b) != `{"name":"app","type":"lxc"}` {
		t.Errorf("expanded run.json = %s, %v", b, err)
	}
	if got, err := l.ReadProgress("locals/dev"); err != nil || got != p {
		t.Errorf("progress = %+v, %v", got, err)
	}
	if msg, err := l.ReadCommitMsg("locals/dev"); err != nil || msg != "first" {
		t.Errorf("commit message = %q, %v", msg, err)
	}
	if got, err := l.ReadState("locals/dev"); err != nil || string(got) != string(data) {
		t.Errorf("ReadState = %q, %v", got, err)
	}
	if err := l.InstallTrail("locals/dev", data, InstallOptions{}); !errors.Is(err, ErrTrailExists) {
		t.Errorf("second install: %v", err)
	}
	if tmps := dotEntries(t, l.Trails()); len(tmps) != 0 {
		t.Errorf("temporaries left: %v", tmps)
	}
}

func TestInstallTrailRefusals(t *testing.T) {
	sha := shaOf("present")
	tests := []struct {
		name  string
		rev   string
		state string
		fault string // step failing with ENOSPC
		want  error
	}{
		{"bad rev", "../x", `{}`, "", ErrBadRevision},
		{"not json", "1", `{"a":`, "", ErrBadState},
		{"not an object", "1", `[1]`, "", ErrBadState},
		{"escaping key", "1", `{"../../etc/x":"` + sha + `"}`, "", ErrBadState},
		{"metadata key", "1", `{".pvr/json":"` + sha + `"}`, "", ErrBadState},
		{"key segment longer than a file name", "1", `{"a/` + strings.Repeat("b", 256) + `":"` + sha + `"}`, "", ErrBadState},
		{"key longer than MaxKeyLen", "1", `{"a/` + strings.Repeat(strings.Repeat("b", 200)+"/", 11) + `c":"` + sha + `"}`, "", ErrBadState},
		{"key below an object's", "1", `{"a/b":"` + sha + `","a/b/c":"` + sha + `"}`, "", ErrBadState},
		{"key below a document's", "1", `{"a/b.json":{},"a/b.json/c/d":"` + sha + `"}`, "", ErrBadState},
		{"missing object", "1", `{"a/b":"` + shaOf("absent") + `"}`, "", ErrObjectMissing},
		{"no space linking", "1", `{"a/b":"` + sha + `"}`, "install.link", ErrNoSpace},
		{"no space syncing", "1", `{"a/b":"` + sha + `"}`, "install.sync", ErrNoSpace},
		{"no space renaming", "1", `{"a/b":"` + sha + `"}`, "install.rename", ErrNoSpace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayout(t)
			put(t, l, "present")
			setFault(t, func(step string) error {
				if step == tc.fault {
					return syscall.ENOSPC
				}
				return nil
			})
			err := l.InstallTrail(tc.rev, []byte(tc.state), InstallOptions{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			entries, _ := os.ReadDir(l.Trails())
			if len(entries) != 0 {
				t.Errorf("trails/ not empty: %v", entries)
			}
		})
	}
}

func TestRemoveTrail(t *testing.T) {
	l := newLayout(t)
	install(t, l, "1", map[string]string{"app/root.squashfs": "rootfs"})
	install(t, l, "locals/a", map[string]string{"app/root.squashfs": "rootfs"})
	for _, rev := range []string{"1", "locals/a"} {
		if err := l.RemoveTrail(rev); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(l.Trail(rev)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", rev, err)
		}
	}
	if err := l.RemoveTrail("1"); !errors.Is(err, ErrNoTrail) {
		t.Errorf("removing a removed trail: %v", err)
	}
	if err := l.Verify(shaOf("rootfs")); err != nil {
		t.Errorf("object went with the trail: %v", err)
	}
	if tmps := dotEntries(t, l.Trails()); len(tmps) != 0 {
		t.Errorf("temporaries left: %v", tmps)
	}
}

func TestRevisions(t *testing.T) {
	l := newLayout(t)
	for _, rev := range []string{"10", "2", "0", "locals/b", "locals/a", "abc"} {
		install(t, l, rev, nil)
	}
	// Not revisions: the current link, a temporary directory, a file.
	if err := l.SetCurrent("2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(l.Trails(), installPrefix+"x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.Trails(), "stray"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := l.Revisions()
	want := []string{"0", "2", "10", "abc", "locals/a", "locals/b"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Revisions = %v, %v; want %v", got, err, want)
	}
	if cur := l.CurrentRev(); cur != "2" {
		t.Errorf("CurrentRev = %q", cur)
	}
	if err := l.WriteCommitMsg("10", "ten"); err != nil {
		t.Fatal(err)
	}
	if err := l.WriteProgress("10", NewProgress(StatusDone, MsgDone)); err != nil {
		t.Fatal(err)
	}
	steps, err := l.Steps()
	if err != nil || len(steps) != len(want) {
		t.Fatalf("Steps = %v, %v", steps, err)
	}
	ten := steps[2]
	if ten.Name != "10" || ten.CommitMsg != "ten" || ten.Progress == nil || ten.Progress.Status != StatusDone || ten.Date.IsZero() {
		t.Errorf("step 10 = %+v", ten)
	}
	if steps[0].Progress != nil || steps[0].CommitMsg != "" {
		t.Errorf("step 0 = %+v", steps[0])
	}
}

func TestParseRefs(t *testing.T) {
	sha := shaOf("x")
	refs, err := ParseRefs([]byte(`{"#spec":"pantavisor-service-system@1","a/b":"` + sha + `",
		"_sigs/a.json":"` + sha + `","c/run.json":{"x":1},"d/notes":"not a sha","e/x":{"y":2},"f/list.json":[1],
		"g/flag.json":true,"g/n.json":42,"g/text.json":"plain text","g/none.json":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(refs.Objects, map[string]string{"a/b": sha}) {
		t.Errorf("objects %v", refs.Objects)
	}
	// A .json key that is not a sha256 is an inline document, scalars
	// too, as upstream writes them into the trail.
	want := map[string]string{"c/run.json": `{"x":1}`, "f/list.json": `[1]`, "g/flag.json": `true`, "g/n.json": `42`,
		"g/text.json": `"plain text"`, "g/none.json": `null`}
	got := map[string]string{}
	for k, v := range refs.JSONs {
		got[k] = string(v)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("jsons %v, want %v", got, want)
	}
	for _, bad := range []string{`null`, `"x"`, `{"/abs":"` + sha + `"}`, `{"a//b":"` + sha + `"}`, `{".pv/progress.json":{}}`} {
		if _, err := ParseRefs([]byte(bad)); !errors.Is(err, ErrBadState) {
			t.Errorf("ParseRefs(%s) = %v", bad, err)
		}
	}
}

func TestReplaceTrail(t *testing.T) {
	l := newLayout(t)
	old := install(t, l, "0", map[string]string{"app/root.squashfs": "old rootfs", "app/old.conf": "old"})
	p := NewProgress(StatusDone, MsgDone)
	if err := l.WriteProgress("0", p); err != nil {
		t.Fatal(err)
	}
	data := stateJSON(t, map[string]string{"app/root.squashfs": put(t, l, "new rootfs")})

	// Failing before the swap leaves the old trail whole.
	setFault(t, func(step string) error {
		if step == "install.rename" {
			return syscall.ENOSPC
		}
		return nil
	})
	if err := l.ReplaceTrail("0", data, InstallOptions{}); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("failed replace: %v", err)
	}
	if got, err := l.ReadState("0"); err != nil || string(got) != string(old) {
		t.Fatalf("after a failed replace the state is %q, %v", got, err)
	}
	// Right after the swap (where a crash may strike) trails/0 is the new
	// trail and a temporary directory, which Recover would remove, holds
	// the old one.
	swapped := false
	setFault(t, func(step string) error {
		if step != "replace.delete" {
			return nil
		}
		swapped = true
		if got, err := l.ReadState("0"); err != nil || string(got) != string(data) {
			t.Errorf("after the swap the state is %q, %v", got, err)
		}
		tmps := dotEntries(t, l.Trails())
		if len(tmps) != 1 {
			t.Errorf("temporaries after the swap: %v", tmps)
		} else if got, err := os.ReadFile(filepath.Join(l.Trails(), tmps[0], TrailJSON)); err != nil || string(got) != string(old) {
			t.Errorf("the old trail is not in %s: %q, %v", tmps[0], got, err)
		}
		return nil
	})
	if err := l.ReplaceTrail("0", data, InstallOptions{}); err != nil || !swapped {
		t.Fatalf("replace: %v (swapped %v)", err, swapped)
	}
	if tmps := dotEntries(t, l.Trails()); len(tmps) != 0 {
		t.Errorf("temporaries left: %v", tmps)
	}
	fault = nil

	c := NewProgress(StatusNew, MsgInstalled)
	if err := l.ReplaceTrail("0", old, InstallOptions{Progress: &c}); err != nil {
		t.Fatal(err)
	}
	if got, err := l.ReadState("0"); err != nil || string(got) != string(old) {
		t.Errorf("state = %q, %v", got, err)
	}
	if got, err := l.ReadProgress("0"); err != nil || got != c {
		t.Errorf("progress = %+v, %v, want the new one", got, err)
	}
	if _, err := os.Stat(filepath.Join(l.Trail("0"), "app/old.conf")); err != nil {
		t.Errorf("object link missing: %v", err)
	}
	if tmps := dotEntries(t, l.Trails()); len(tmps) != 0 {
		t.Errorf("temporaries left: %v", tmps)
	}

	// No old trail: a plain install.
	if err := l.ReplaceTrail("locals/new", data, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := l.ReadState("locals/new"); err != nil || string(got) != string(data) {
		t.Errorf("new trail state = %q, %v", got, err)
	}
	if err := l.ReplaceTrail("../x", data, InstallOptions{}); !errors.Is(err, ErrBadRevision) {
		t.Errorf("bad name: %v", err)
	}
}

// An object at its filesystem's most links (EMLINK) is copied into the
// trail once, and its other keys link to that copy: a state naming it
// under thousands of keys must not ask for a copy per key.
func TestInstallTrailCopiesAnObjectOnce(t *testing.T) {
	l := newLayout(t)
	sha := put(t, l, "rootfs")
	objects := l.Objects()
	real := linkFile
	t.Cleanup(func() { linkFile = real })
	linkFile = func(src, dst string) error {
		if filepath.Dir(src) == objects {
			return &os.LinkError{Op: "link", Old: src, New: dst, Err: syscall.EMLINK}
		}
		return real(src, dst)
	}
	st := `{"a/1":"` + sha + `","a/2":"` + sha + `","b/3":"` + sha + `","c/4/5":"` + sha + `"}`
	if err := l.InstallTrail("1", []byte(st), InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	inodes := map[uint64]bool{}
	for _, key := range []string{"a/1", "a/2", "b/3", "c/4/5"} {
		p := filepath.Join(l.Trail("1"), filepath.FromSlash(key))
		data, err := os.ReadFile(p)
		if err != nil || string(data) != "rootfs" {
			t.Fatalf("%s: %q, %v", key, data, err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !Verified(fi) {
			t.Errorf("%s: mode %v, want the verified mark", key, fi.Mode())
		}
		inodes[fi.Sys().(*syscall.Stat_t).Ino] = true
	}
	if len(inodes) != 1 {
		t.Errorf("%d copies of the object in the trail, want 1", len(inodes))
	}
}

//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/storage"
)

// The storage side of a local update against a running appengine, through
// bin/pvcontrol: the running revision's objects put again (they exist: 200),
// its state installed as locals/copy and read back, and a state naming an
// object the device lacks refused with nothing kept.
func TestLocalUpdateUpload(t *testing.T) {
	isolated.Require(t)
	dir := buildStorage(t, []map[string]any{{"name": "app", "status_goal": "STARTED", "timeout": 30}},
		[]ctr{{name: "web", group: "app", cmd: sleeper}})
	l := storage.Layout{Root: dir}
	d := startDevice(t, dir)

	objs, err := l.ListObjects()
	if err != nil || len(objs) == 0 {
		t.Fatalf("objects of revision 0: %v %v", objs, err)
	}
	for _, o := range objs {
		if out, code := d.pvcontrol("objects", "put", l.Object(o.SHA)); code != 0 || strings.TrimSpace(out) != o.SHA {
			t.Fatalf("objects put %s: %d %s", o.SHA, code, out)
		}
	}
	st, err := l.ReadState("0")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(file, st, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := d.pvcontrol("steps", "put", file, "locals/copy"); code != 0 {
		t.Fatalf("steps put: %d %s", code, out)
	}
	if out, code := d.pvcontrol("steps", "get", "locals/copy"); code != 0 || strings.TrimSuffix(out, "\n") != strings.TrimSuffix(string(st), "\n") {
		t.Errorf("steps get: %d %s", code, out)
	}
	if out, code := d.pvcontrol("steps", "ls"); code != 0 || !strings.Contains(out, "locals/copy") || !strings.Contains(out, "Update ready to be run") {
		t.Errorf("steps ls: %d %s", code, out)
	}

	missing := strings.Repeat("ab", 32)
	bad := strings.Replace(string(st), objs[0].SHA, missing, 1)
	if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := d.pvcontrol("steps", "put", file, "locals/bad"); code != 255 || !strings.Contains(out, missing) {
		t.Errorf("steps put with a missing object: %d %s", code, out)
	}
	if _, err := os.Stat(l.Trail("locals/bad")); !os.IsNotExist(err) {
		t.Errorf("refused revision is on disk: %v", err)
	}

	// A state that does not validate: 422 with every problem named, and
	// nothing kept.
	invalid := strings.Replace(string(st), `"group": "app"`, `"group": "nosuchgroup"`, 1)
	if invalid == string(st) {
		t.Fatal("the test's edit did not apply")
	}
	if err := os.WriteFile(file, []byte(invalid), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := d.pvcontrol("steps", "put", file, "locals/invalid"); code != 255 ||
		!strings.Contains(out, "State JSON has bad format") || !strings.Contains(out, "nosuchgroup") {
		t.Errorf("steps put of an invalid state: %d %s", code, out)
	}
	if _, err := os.Stat(l.Trail("locals/invalid")); !os.IsNotExist(err) {
		t.Errorf("invalid revision is on disk: %v", err)
	}

	// An object whose content does not match its name: 422, exit 60, and
	// no object kept.
	obj := filepath.Join(t.TempDir(), "obj")
	if err := os.WriteFile(obj, []byte("not what the name says"), 0o644); err != nil {
		t.Fatal(err)
	}
	wrong := strings.Repeat("cd", 32)
	if out, code := d.pvcontrol("objects", "put", obj, wrong); code != 60 || !strings.Contains(out, "Object has bad checksum") {
		t.Errorf("objects put with a bad checksum: %d %s", code, out)
	}
	if _, err := os.Stat(l.Object(wrong)); !os.IsNotExist(err) {
		t.Errorf("object with a bad checksum is on disk: %v", err)
	}
	if err := l.Check(); err != nil {
		t.Errorf("storage after the refusals: %v", err)
	}
}

//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/storage"
)

// A revision that cannot run leaves the device up in safe mode: the
// control socket answers, no container starts, the log says why, and
// SIGTERM still stops it cleanly.
func TestSafeMode(t *testing.T) {
	isolated.Require(t)
	for _, c := range []struct {
		name  string
		spoil func(t *testing.T, storage string)
		want  []string
	}{
		{"corrupt object", func(t *testing.T, dir string) {
			objs, _ := filepath.Glob(filepath.Join(dir, "objects", "*"))
			if len(objs) == 0 {
				t.Fatal("no objects in the storage")
			}
			for _, o := range objs {
				// A new file: objects are hard-linked into the trail.
				data, err := os.ReadFile(o)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(o); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(o, append(data, 'x'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}, []string{"is corrupt", "revision 0 cannot run", "safe mode (control socket up, no containers)"}},
		{"bad revision name", func(t *testing.T, dir string) {
			env := bootloader.AppEngine{Dir: storage.Layout{Root: dir}.Boot()}
			if err := env.Save(bootloader.Env{"pv_rev": "../0"}); err != nil {
				t.Fatal(err)
			}
		}, []string{"revision ../0 cannot run: bad revision name", "safe mode (control socket up, no containers)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{{name: "a", group: "app", cmd: sleeper}})
			c.spoil(t, dir)
			d := startDevice(t, dir)
			d.waitOutput("control socket ready", 20*time.Second)
			if cs := d.containers(); len(cs) != 0 {
				t.Errorf("containers in safe mode: %v", cs)
			}
			for _, w := range c.want {
				if !strings.Contains(d.output(), w) {
					t.Errorf("output lacks %q:\n%s", w, d.output())
				}
			}
			if strings.Contains(d.output(), "starting container") {
				t.Errorf("a container was started:\n%s", d.output())
			}
			if code := d.stop(30 * time.Second); code != 0 {
				t.Errorf("exit code %d", code)
			}
		})
	}
}

// A bootloader that cannot be set up (a type not implemented, or one
// whose partitions are not configured) made the supervisor exit before
// the control socket was up: on a device, PID 1 rebooted, and every boot
// the same. It is safe mode now, saying why.
func TestUnusableBootloaderIsSafeMode(t *testing.T) {
	isolated.Require(t)
	dir := buildStorage(t, []map[string]any{{"name": "app"}}, []ctr{{name: "a", group: "app", cmd: sleeper}})
	d := startDeviceEnv(t, dir, []string{"PV_BOOTLOADER_TYPE=uboot-ab"})
	d.waitOutput("control socket ready", 20*time.Second)
	if cs := d.containers(); len(cs) != 0 {
		t.Errorf("containers in safe mode: %v", cs)
	}
	for _, w := range []string{"bootloader unusable", "uboot-ab", "safe mode (control socket up, no containers)"} {
		if !strings.Contains(d.output(), w) {
			t.Errorf("output lacks %q:\n%s", w, d.output())
		}
	}
	// An update is refused naming why, and the revision's progress is
	// left as it was.
	before, _ := d.pvcontrol("steps", "show-progress", "0")
	out, code := d.pvcontrol("cmd", "run", "0")
	if code == 0 || !strings.Contains(out, "bootloader unusable") || !strings.Contains(out, "uboot-ab") {
		t.Errorf("cmd run on an unusable bootloader: %d %s; want a refusal naming why", code, out)
	}
	if after, _ := d.pvcontrol("steps", "show-progress", "0"); after != before {
		t.Errorf("a refused run changed the progress of 0:\n%s\nwas:\n%s", after, before)
	}
	if code := d.stop(30 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

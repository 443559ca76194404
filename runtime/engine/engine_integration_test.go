//go:build integration

package engine_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/internal/revtest"
	"github.com/pantavisor/pv/runtime/driver"
	_ "github.com/pantavisor/pv/runtime/driver/initshim"
	"github.com/pantavisor/pv/runtime/engine"
	"github.com/pantavisor/pv/runtime/testrootfs"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testrootfs.Cleanup()
	os.Exit(code)
}

// squashfsMounts lists the squashfs mounts under dir.
func squashfsMounts(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || !strings.HasPrefix(f[4], dir+"/") {
			continue
		}
		for i, x := range f {
			if x == "-" && i+1 < len(f) && f[i+1] == "squashfs" {
				out = append(out, f[4])
			}
		}
	}
	return out
}

// The engine keeps a container's image mounted between a stop (Unmount)
// and the next start (Mount), so that the image is not decompressed again,
// and lets go of it at Close.
func TestImageStaysMountedUntilClose(t *testing.T) {
	isolated.Require(t)
	dir := t.TempDir()
	image := testrootfs.Squashfs(t)
	if err := revtest.Build(dir, image, nil, []revtest.Container{{Name: "app", Cmd: "/bin/true", LXC: []string{"lxc.namespace.keep = user net ipc"}}}); err != nil {
		t.Fatal(err)
	}
	layout := storage.Layout{Root: dir}
	st, err := state.LoadTrail(layout.Trail("0"), state.Options{AppEngine: true})
	if err != nil {
		t.Fatal(err)
	}
	drv, err := driver.New(driver.Options{StateRoot: t.TempDir(), CgroupParent: "pv-engine-test"})
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	eng := &engine.Engine{Layout: layout, Rev: "0", State: st, Driver: drv, WorkDir: work,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	c := st.Container("app")
	object := filepath.Join(dir, "objects", c.Objects["app/"+c.RootVolume])

	var first []string
	for i := range 3 {
		m, err := eng.Mount(c)
		if err != nil {
			t.Fatal(err)
		}
		run, err := m.Start(nil)
		if err != nil {
			t.Fatal(err)
		}
		if ex := run.Wait(); ex.Code != 0 || ex.Signal != 0 {
			t.Fatalf("exit %+v", ex)
		}
		if err := run.Destroy(); err != nil {
			t.Fatal(err)
		}
		if err := m.Unmount(); err != nil {
			t.Fatal(err)
		}
		// Stopped: the image is still mounted, once, at the same place.
		got := squashfsMounts(t, work)
		if i == 0 {
			first = got
		}
		if len(got) != 1 || got[0] != first[0] {
			t.Fatalf("cycle %d: squashfs mounts %v, want the one of the first cycle %v", i, got, first)
		}
		if l := testrootfs.LoopsBackedBy(object); len(l) != 1 {
			t.Fatalf("cycle %d: loop devices on the image: %v", i, l)
		}
	}
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	if m := testrootfs.MountsUnder(work); len(m) > 0 {
		t.Errorf("mounts left after Close: %v", m)
	}
	if l := testrootfs.LoopsBackedBy(object); len(l) > 0 {
		t.Errorf("loop devices left after Close: %v", l)
	}
	// After Close, a mount keeps nothing: its unmount lets the image go.
	m, err := eng.Mount(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	if m := testrootfs.MountsUnder(work); len(m) > 0 {
		t.Errorf("mounts left by a mount after Close: %v", m)
	}
}

//go:build integration

package integration

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/internal/revtest"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/runtime/driver"
	"github.com/pantavisor/pv/runtime/testrootfs"
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
	// Identified while the sender lived, it is the nobody container (403);
	// after, it is unknown (upstream's 500): never the host.
	if !strings.Contains(out, "ORPHAN GET /containers 403") &&
		!strings.Contains(out, `ORPHAN GET /containers 500 {"Error":"Internal error, unknown caller"}`) {
		t.Errorf("a request whose sender exited: want 403 or unknown caller:\n%s", out)
	}
}

// cgroupDirs lists the directories under the device's cgroup parent in
// every hierarchy this process is in (the device's containers are made
// under its cgroup), with their inode numbers, which a directory made
// again under the same name does not share.
func cgroupDirs(t *testing.T, parent string) map[string]uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		tops, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", f[2], parent))
		if v2 := filepath.Join("/sys/fs/cgroup", f[2], parent); f[0] == "0" {
			tops = append(tops, v2)
		}
		for _, top := range tops {
			filepath.WalkDir(top, func(p string, e fs.DirEntry, err error) error {
				if err == nil && e.IsDir() {
					if fi, err := e.Info(); err == nil {
						out[p] = fi.Sys().(*syscall.Stat_t).Ino
					}
				}
				return nil
			})
		}
	}
	return out
}

// After a SIGKILL of the appengine host stage, its device dies with it
// and the cgroups of its containers stay; the next start removes them
// before it makes its own.
func TestCgroupsOfKilledDeviceRemovedAtNextStart(t *testing.T) {
	isolated.Require(t)
	ctrs := []ctr{
		{name: "one", group: "app", cmd: `/bin/sh "-c" "` + idle + `"`},
		{name: "two", group: "app", cmd: `/bin/sh "-c" "` + idle + `"`},
	}
	storage := buildStorage(t, []map[string]any{{"name": "app"}}, ctrs)
	parent := driver.DeviceCgroupParent(storage)
	d := startDevice(t, storage)
	d.waitContainers("both started", 30*time.Second, statusIs(messages.StatusStarted, "one", "two"))
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	d.waitExit(10 * time.Second)
	// The device is PID 1 of its namespace: when it goes, so do the
	// containers, but not their cgroup directories.
	var old map[string]uint64
	deadline := time.Now().Add(10 * time.Second)
	for {
		old = cgroupDirs(t, parent)
		busy := false
		for dir := range old {
			if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil && len(strings.TrimSpace(string(b))) > 0 {
				busy = true
			}
		}
		if !busy || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	containerDirs := 0
	for dir := range old {
		if strings.HasSuffix(dir, "/one") || strings.HasSuffix(dir, "/two") {
			containerDirs++
		}
	}
	if containerDirs == 0 {
		t.Fatalf("no container cgroup left by the killed device, so the test proves nothing: %v", old)
	}

	d2 := startDevice(t, storage)
	d2.waitContainers("both started again", 30*time.Second, statusIs(messages.StatusStarted, "one", "two"))
	now := cgroupDirs(t, parent)
	for dir, ino := range old {
		if ino2, ok := now[dir]; ok && ino2 == ino {
			// The parent itself may stay if another process holds it;
			// a container's directory must be a new one.
			if strings.HasSuffix(dir, "/one") || strings.HasSuffix(dir, "/two") {
				t.Errorf("cgroup %s of the killed run is still there (inode %d)", dir, ino)
			}
		}
	}
}

// A bind source under /volumes/ is resolved inside its volume: an image
// whose /link points at / binds the image's own root, not the host's.
func TestBindSourceSymlinkStaysInImage(t *testing.T) {
	isolated.Require(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	if out, err := exec.Command("cp", "-a", testrootfs.Dir(t), root).CombinedOutput(); err != nil {
		t.Fatalf("copy rootfs: %v: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(root, "image-marker"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(dir, "root.squashfs")
	if err := testrootfs.MakeSquashfs(root, image); err != nil {
		t.Fatal(err)
	}
	// The host's root has what the image has not: this test's directory.
	hostOnly := strings.TrimPrefix(dir, "/")
	cmd := `/bin/sh "-c" "test -e /mnt/img/image-marker && echo BIND-IMAGE-ROOT; test -e /mnt/img/` + hostOnly + ` && echo BIND-HOST-ROOT; echo bind-check-done; ` + idle + `"`
	storage := filepath.Join(dir, "storage")
	err := revtest.Build(storage, image, map[string]any{"groups": []any{map[string]any{"name": "app", "restart_policy": "container"}}},
		[]revtest.Container{{Name: "img", Group: "app", Cmd: cmd,
			LXC: append(append([]string(nil), revtest.UpstreamLXC...), "lxc.mount.entry = /volumes/img/root.squashfs/link mnt/img none bind,ro,create=dir 0 0")}})
	if err != nil {
		t.Fatal(err)
	}
	d := startDevice(t, storage)
	d.waitConsole("img", "bind-check-done", 30*time.Second)
	out := d.console("img")
	if !strings.Contains(out, "BIND-IMAGE-ROOT") || strings.Contains(out, "BIND-HOST-ROOT") {
		t.Errorf("/volumes/img/root.squashfs/link (-> /) bound something else than the image's root:\n%s", out)
	}
}

// A revision name from boot/appengine.txt that climbs out of logs/ is
// refused before it names the log directory: the device runs in safe
// mode and nothing is made where the name points.
func TestBadRevisionNameMakesNoLogDir(t *testing.T) {
	isolated.Require(t)
	base := t.TempDir()
	storage := filepath.Join(base, "a", "storage")
	if err := revtest.Build(storage, rootImage(t), nil, []revtest.Container{{Name: "one", Group: "app", Cmd: `/bin/sh "-c" "` + idle + `"`,
		LXC: revtest.UpstreamLXC}}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(storage, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	// logs/../../../escape is base/escape.
	if err := os.WriteFile(filepath.Join(storage, "boot", "appengine.txt"), []byte("pv_rev=../../../escape\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDevice(t, storage)
	d.waitOutput("bootloader names a bad revision", 20*time.Second)
	if _, err := os.Stat(filepath.Join(base, "escape")); !os.IsNotExist(err) {
		t.Errorf("a directory was made where the bad revision name points: %v", err)
	}
}

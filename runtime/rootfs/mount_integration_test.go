//go:build integration

package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/runtime/testrootfs"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testrootfs.Cleanup()
	os.Exit(code)
}

// waitNoLoops waits for the auto-clearing loop devices of image to go.
func waitNoLoops(t *testing.T, image string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		loops := testrootfs.LoopsBackedBy(image)
		if len(loops) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("loop devices still bound to %s: %v", image, loops)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func assertClean(t *testing.T, work string, images ...string) {
	t.Helper()
	if m := testrootfs.MountsUnder(work); len(m) > 0 {
		t.Errorf("mounts left under %s: %v", work, m)
	}
	for _, img := range images {
		waitNoLoops(t, img)
	}
}

func TestMountSquashfsBoot(t *testing.T) {
	isolated.Require(t)
	img := testrootfs.Squashfs(t)
	work := filepath.Join(t.TempDir(), "c1")
	r, err := Mount(Options{Image: img, WorkBase: work})
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind() != Squashfs {
		t.Errorf("kind = %v", r.Kind())
	}
	if _, err := os.Stat(filepath.Join(r.Path(), "bin/busybox")); err != nil {
		t.Errorf("rootfs lacks busybox: %v", err)
	}
	if got := len(testrootfs.LoopsBackedBy(img)); got != 1 {
		t.Errorf("loop devices bound to image = %d, want 1", got)
	}
	if err := os.WriteFile(filepath.Join(r.Path(), "etc/written"), []byte("x"), 0o644); err != nil {
		t.Fatalf("write to overlay: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(r.Path(), "etc/written")); err != nil || string(b) != "x" {
		t.Errorf("write not read back through the overlay: %q, %v", b, err)
	}
	// The upper tmpfs belongs to the overlay alone: it is not in the
	// mount table and the write is nowhere under the work base.
	for _, m := range testrootfs.MountsUnder(work) {
		if m == filepath.Join(work, "overlay") {
			t.Errorf("the upper tmpfs is still mounted at %s", m)
		}
	}
	if _, err := os.Stat(filepath.Join(work, "overlay/upper/etc/written")); err == nil {
		t.Errorf("the write landed on the work base's filesystem")
	}
	if err := os.WriteFile(filepath.Join(r.Lower(), "x"), nil, 0o644); err == nil {
		t.Errorf("lower layer is writable")
	}
	if err := r.Unmount(); err != nil {
		t.Fatal(err)
	}
	if err := r.Unmount(); err != nil {
		t.Fatalf("second Unmount: %v", err)
	}
	assertClean(t, work, img)
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Errorf("work base not removed: %v", err)
	}
	// Boot persistence: the write is gone with the unmount.
	r, err = Mount(Options{Image: img, WorkBase: work})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r.Path(), "etc/written")); err == nil {
		t.Errorf("a Boot write survived the unmount")
	}
	if err := r.Unmount(); err != nil {
		t.Fatal(err)
	}
	assertClean(t, work, img)
}

// The size limit of the Boot tmpfs holds with the tmpfs detached.
func TestMountBootTmpfsSize(t *testing.T) {
	isolated.Require(t)
	img := testrootfs.Squashfs(t)
	work := filepath.Join(t.TempDir(), "c1")
	r, err := Mount(Options{Image: img, WorkBase: work, TmpfsSize: "64k"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Unmount(); err != nil {
			t.Error(err)
		}
		assertClean(t, work, img)
	}()
	err = os.WriteFile(filepath.Join(r.Path(), "big"), make([]byte, 256<<10), 0o644)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("256 KiB into a 64 KiB tmpfs: %v, want ENOSPC", err)
	}
}

func TestMountPermanentKeepsWrites(t *testing.T) {
	isolated.Require(t)
	img := testrootfs.Squashfs(t)
	tmp := t.TempDir()
	work, persist := filepath.Join(tmp, "work"), filepath.Join(tmp, "disks/perm/c/lxc-overlay")
	for i := range 2 {
		r, err := Mount(Options{Image: img, WorkBase: work, Persistence: Permanent, PersistDir: persist})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(r.Path(), "root/counter")
		b, _ := os.ReadFile(p)
		if want := strings.Repeat("x", i); string(b) != want {
			t.Errorf("mount %d: counter = %q, want %q", i, b, want)
		}
		if err := os.WriteFile(p, append(b, 'x'), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := r.Unmount(); err != nil {
			t.Fatal(err)
		}
		assertClean(t, work, img)
	}
	if _, err := os.Stat(filepath.Join(persist, "upper/root/counter")); err != nil {
		t.Errorf("persist dir lacks the write: %v", err)
	}
}

func TestMountDirWithVolumes(t *testing.T) {
	isolated.Require(t)
	dir := testrootfs.Dir(t)
	img := testrootfs.Squashfs(t)
	tmp := t.TempDir()
	work := filepath.Join(tmp, "work")
	volDir := filepath.Join(tmp, "voldir")
	if err := os.MkdirAll(volDir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(volDir, "f"), []byte("v"), 0o644)
	r, err := Mount(Options{
		Image: dir, WorkBase: work, Persistence: Revision, PersistDir: filepath.Join(tmp, "rev"),
		Volumes: []Volume{
			{Image: img, Target: filepath.Join(work, "vols/a")},
			{Image: volDir, Target: filepath.Join(work, "vols/b")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind() != Dir || r.Lower() != dir {
		t.Errorf("kind %v lower %s", r.Kind(), r.Lower())
	}
	if _, err := os.Stat(filepath.Join(work, "vols/a/bin/sh")); err != nil {
		t.Errorf("squashfs volume not mounted: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(work, "vols/b/f")); string(b) != "v" {
		t.Errorf("dir volume content = %q", b)
	}
	if err := os.WriteFile(filepath.Join(work, "vols/b/g"), nil, 0o644); err == nil {
		t.Errorf("dir volume is writable")
	}
	if err := os.WriteFile(filepath.Join(r.Path(), "root/new"), nil, 0o644); err != nil {
		t.Errorf("overlay over dir not writable: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "root/new")); err == nil {
		t.Errorf("write reached the lower dir")
	}
	if err := r.Unmount(); err != nil {
		t.Fatal(err)
	}
	assertClean(t, work, img)
}

func TestMountUnwindsOnFailure(t *testing.T) {
	isolated.Require(t)
	img := testrootfs.Squashfs(t)
	tmp := t.TempDir()
	bad := filepath.Join(tmp, "bad.img")
	os.WriteFile(bad, []byte("not squashfs"), 0o644)
	work := filepath.Join(tmp, "work")
	_, err := Mount(Options{Image: img, WorkBase: work, Volumes: []Volume{{Image: bad, Target: filepath.Join(work, "v")}}})
	if err == nil {
		t.Fatal("Mount with a bad volume succeeded")
	}
	if !strings.Contains(err.Error(), "bad.img") {
		t.Errorf("error does not name the image: %v", err)
	}
	assertClean(t, work, img)

	// A squashfs-magic file that is not a valid filesystem fails in mount(2)
	// after the loop device was attached: the device must auto-clear.
	corrupt := filepath.Join(tmp, "corrupt.img")
	os.WriteFile(corrupt, append([]byte("hsqs"), make([]byte, 8192)...), 0o644)
	_, err = Mount(Options{Image: corrupt, WorkBase: work})
	if err == nil || !strings.Contains(err.Error(), "mount squashfs") {
		t.Fatalf("Mount of a corrupt image: %v", err)
	}
	assertClean(t, work, corrupt)
}

// Roots mounted with one Lowers share a single loop device and squashfs
// mount of their image, keep their own overlays, and the last Unmount
// releases the shared mount.
func TestMountSharedLower(t *testing.T) {
	isolated.Require(t)
	img := testrootfs.Squashfs(t)
	tmp := t.TempDir()
	lowers := NewLowers(filepath.Join(tmp, "lowers"))
	const n = 8
	roots := make([]*Root, n)
	errs := make(chan error, n)
	// Concurrently: the first Acquire mounts, the others wait for it.
	for i := range n {
		go func() {
			defer func() {
				if p := recover(); p != nil {
					errs <- fmt.Errorf("panic: %v", p)
				}
			}()
			r, err := Mount(Options{Image: img, WorkBase: filepath.Join(tmp, "work", fmt.Sprint(i)), Lowers: lowers,
				Volumes: []Volume{{Image: img, Target: filepath.Join(tmp, "work", fmt.Sprint(i), "vol")}}})
			roots[i] = r
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, r := range roots {
			if r != nil {
				r.Unmount()
			}
		}
	})
	if got := testrootfs.LoopsBackedBy(img); len(got) != 1 {
		t.Errorf("loop devices bound to image = %v, want 1", got)
	}
	if lowers.Len() != 1 {
		t.Errorf("Lowers.Len = %d, want 1", lowers.Len())
	}
	for i, r := range roots {
		if r.Lower() != roots[0].Lower() {
			t.Errorf("root %d lower %s, root 0 lower %s", i, r.Lower(), roots[0].Lower())
		}
		if !strings.HasPrefix(r.Lower(), lowers.Dir()+"/") {
			t.Errorf("lower %s not under %s", r.Lower(), lowers.Dir())
		}
		if _, err := os.Stat(filepath.Join(tmp, "work", fmt.Sprint(i), "vol/bin/sh")); err != nil {
			t.Errorf("volume of root %d: %v", i, err)
		}
	}
	if err := os.WriteFile(filepath.Join(roots[0].Path(), "etc/only0"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(roots[1].Path(), "etc/only0")); err == nil {
		t.Errorf("a write to root 0 shows in root 1")
	}
	for i, r := range roots[:n-1] {
		if err := r.Unmount(); err != nil {
			t.Fatal(err)
		}
		assertClean(t, filepath.Join(tmp, "work", fmt.Sprint(i)))
	}
	// The last user still reads the shared lower.
	last := roots[n-1]
	if _, err := os.ReadFile(filepath.Join(last.Path(), "bin/busybox")); err != nil {
		t.Errorf("last root after the others unmounted: %v", err)
	}
	if got := len(testrootfs.LoopsBackedBy(img)); got != 1 {
		t.Errorf("loop devices with one user left = %d, want 1", got)
	}
	if err := last.Unmount(); err != nil {
		t.Fatal(err)
	}
	if err := last.Unmount(); err != nil {
		t.Fatalf("second Unmount: %v", err)
	}
	assertClean(t, tmp, img)
	if lowers.Len() != 0 {
		t.Errorf("Lowers.Len after the last Unmount = %d", lowers.Len())
	}
	if ents, _ := os.ReadDir(lowers.Dir()); len(ents) > 0 {
		t.Errorf("mountpoints left in %s: %d", lowers.Dir(), len(ents))
	}
	// A new user mounts it again.
	lw, err := lowers.Acquire(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(lw.Path(), "bin/sh")); err != nil {
		t.Errorf("re-acquired lower: %v", err)
	}
	if err := lw.Release(); err != nil {
		t.Fatal(err)
	}
	if err := lw.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	assertClean(t, tmp, img)
}

// A shared lower that fails to mount is not cached: the error reaches the
// caller, nothing is left, and a later Acquire tries again.
func TestSharedLowerFailure(t *testing.T) {
	isolated.Require(t)
	tmp := t.TempDir()
	lowers := NewLowers(filepath.Join(tmp, "lowers"))
	corrupt := filepath.Join(tmp, "corrupt.img")
	os.WriteFile(corrupt, append([]byte("hsqs"), make([]byte, 8192)...), 0o644)
	for range 2 {
		_, err := Mount(Options{Image: corrupt, WorkBase: filepath.Join(tmp, "work"), Lowers: lowers})
		if err == nil || !strings.Contains(err.Error(), "mount squashfs") {
			t.Fatalf("Mount of a corrupt image: %v", err)
		}
		if lowers.Len() != 0 {
			t.Errorf("failed mount cached: Len = %d", lowers.Len())
		}
		assertClean(t, tmp, corrupt)
	}
}

// A volume bound read-only keeps its source's nosuid, nodev and noexec:
// the read-only remount of a bind sets its flags anew, and had dropped
// them, so a volume image's setuid files and device nodes worked in the
// container (and in a user namespace, where they are locked, the remount
// would fail).
func TestVolumeBindKeepsItsSourcesFlags(t *testing.T) {
	isolated.Require(t)
	img := testrootfs.Squashfs(t)
	dir := testrootfs.Dir(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", src, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(src, syscall.MNT_DETACH) })
	work := filepath.Join(tmp, "work")
	r, err := Mount(Options{Image: dir, WorkBase: work, Lowers: NewLowers(filepath.Join(tmp, "lowers")),
		Volumes: []Volume{
			{Image: img, Target: filepath.Join(work, "vols/sq")},
			{Image: src, Target: filepath.Join(work, "vols/dir")},
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Unmount()
	for _, c := range []struct {
		target string
		want   int64
	}{
		{"vols/sq", unix.ST_RDONLY | unix.ST_NOSUID | unix.ST_NODEV},
		{"vols/dir", unix.ST_RDONLY | unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC},
	} {
		var st unix.Statfs_t
		if err := unix.Statfs(filepath.Join(work, c.target), &st); err != nil {
			t.Fatal(err)
		}
		if st.Flags&c.want != c.want {
			t.Errorf("%s: flags %#x, want %#x set", c.target, st.Flags, c.want)
		}
	}
}

// The config overlay (upstream's _config/<name>/) is the root's topmost
// read-only layer: its files shadow the image's, the container's writes
// reach neither the overlay's copy nor its sources, a supervisor that
// adopts the root keeps it, and Unmount removes it.
func TestMountConfigOverlay(t *testing.T) {
	isolated.Require(t)
	img := testrootfs.Squashfs(t)
	tmp := t.TempDir()
	work := filepath.Join(tmp, "work")
	object := filepath.Join(tmp, "object")
	if err := os.WriteFile(object, []byte("configured\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	opts := Options{Image: img, WorkBase: work, Config: []ConfigFile{
		{Path: "etc/hostname", Source: object},
		{Path: "etc/app/app.json", Data: []byte(`{"level":3}`)},
	}}
	r, err := Mount(opts)
	if err != nil {
		t.Fatal(err)
	}
	read := func(rel string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(r.Path(), rel))
		if err != nil {
			t.Errorf("read %s: %v", rel, err)
		}
		return string(b)
	}
	if got := read("etc/hostname"); got != "configured\n" {
		t.Errorf("etc/hostname = %q: the config does not shadow the image", got)
	}
	if got := read("etc/app/app.json"); got != `{"level":3}` {
		t.Errorf("etc/app/app.json = %q", got)
	}
	if got := read("etc/passwd"); !strings.HasPrefix(got, "root:") {
		t.Errorf("etc/passwd = %q: the image's files are gone", got)
	}
	if err := os.WriteFile(filepath.Join(r.Path(), "etc/hostname"), []byte("written\n"), 0o644); err != nil {
		t.Fatalf("write a config file: %v", err)
	}
	if got := read("etc/hostname"); got != "written\n" {
		t.Errorf("etc/hostname after a write = %q", got)
	}
	for _, f := range []string{object, filepath.Join(work, configDir, "etc/hostname")} {
		if b, err := os.ReadFile(f); err != nil || string(b) != "configured\n" {
			t.Errorf("%s = %q, %v: the write reached it", f, b, err)
		}
	}

	// A supervisor that adopts the root finds the overlay, and writes
	// nothing: the container's write stays.
	opts.Adopt = true
	adopted, err := Mount(opts)
	if err != nil {
		t.Fatalf("adopt: %v", err)
	}
	if got := read("etc/hostname"); got != "written\n" {
		t.Errorf("etc/hostname after the adoption = %q", got)
	}
	if err := adopted.Unmount(); err != nil {
		t.Fatal(err)
	}
	if err := r.Unmount(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(work, configDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the config overlay is left after Unmount: %v", err)
	}
	assertClean(t, work, img)

	// A root a supervisor from before config overlays mounted has none:
	// it is adopted as it is, and nothing is written.
	opts.Adopt = false
	opts.Config = nil
	if r, err = Mount(opts); err != nil {
		t.Fatal(err)
	}
	opts.Adopt = true
	opts.Config = []ConfigFile{{Path: "etc/hostname", Source: object}}
	if adopted, err = Mount(opts); err != nil {
		t.Fatalf("adopt a root without its overlay: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(work, configDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the adoption wrote an overlay: %v", err)
	}
	if got := read("etc/hostname"); got != "testrootfs\n" {
		t.Errorf("etc/hostname of the adopted root = %q", got)
	}
	if err := errors.Join(adopted.Unmount(), r.Unmount()); err != nil {
		t.Fatal(err)
	}
	assertClean(t, work, img)
}

// What a crash left in the config overlay's place is replaced.
func TestMountConfigOverlayReplacesLeftovers(t *testing.T) {
	isolated.Require(t)
	img := testrootfs.Squashfs(t)
	work := filepath.Join(t.TempDir(), "work")
	stale := filepath.Join(work, configDir, "etc", "stale")
	if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("old revision"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Mount(Options{Image: img, WorkBase: work, Config: []ConfigFile{{Path: "etc/new", Data: []byte("n")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(r.Path(), "etc/stale")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a leftover of the overlay shows in the root: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(r.Path(), "etc/new")); err != nil || string(b) != "n" {
		t.Errorf("etc/new = %q, %v", b, err)
	}
	if err := r.Unmount(); err != nil {
		t.Fatal(err)
	}
	assertClean(t, work, img)
}

package bench

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/revtest"
	"github.com/pantavisor/pv/runtime/rootfs"
	"github.com/pantavisor/pv/runtime/testrootfs"
)

// PantavisorBin is the pantavisor binary the appengine figures run; set by
// the runner.
var PantavisorBin = "bin/pantavisor"

func init() {
	RegisterNeed("pantavisor", func() string {
		if fi, err := os.Stat(PantavisorBin); err != nil || fi.IsDir() {
			return PantavisorBin + " not built (make build)"
		}
		return ""
	})
}

// containerNeeds returns the needs of a figure that starts containers,
// plus its own.
func containerNeeds(more ...string) []string {
	return append([]string{"root", "pid1", "exec:busybox", "exec:mksquashfs"}, more...)
}

// fixture is what one run of a container figure works on, in a temporary
// directory of its own: the busybox rootfs, its squashfs image and, for
// the baselines, that image mounted once (loop + squashfs + overlay, as
// runtime/rootfs mounts a container's root).
type fixture struct {
	dir   string
	tree  string // the rootfs as a directory
	image string // its squashfs image
	// tag makes names (containers, cgroups) unique to this run, so that
	// whatever a failed cleanup leaves cannot be confused with another's.
	tag   string
	once  *rootfs.Root
	tmpfs bool // dir is a tmpfs of its own
}

func newFixture() (_ *fixture, err error) {
	dir, err := os.MkdirTemp("", "pvbench-")
	if err != nil {
		return nil, fmt.Errorf("fixture: %w", err)
	}
	f := &fixture{dir: dir, tree: filepath.Join(dir, "rootfs"), image: filepath.Join(dir, "root.squashfs"), tag: randomTag()}
	defer func() {
		if err != nil {
			err = errors.Join(err, f.close())
		}
	}()
	// Everything of a run lives in RAM, as a device's run-time state does
	// (the appengine's work directory is a tmpfs): disk writes of state
	// files, logs and lock files would only add noise, and /tmp is on
	// disk here. The mount is private to this mount namespace.
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return nil, fmt.Errorf("fixture: mount tmpfs: %w", err)
	}
	f.tmpfs = true
	if err := testrootfs.Build(f.tree); err != nil {
		return nil, fmt.Errorf("fixture: %w", err)
	}
	if err := testrootfs.MakeSquashfs(f.tree, f.image); err != nil {
		return nil, fmt.Errorf("fixture: %w", err)
	}
	return f, nil
}

// mountedOnce returns the directory of the image mounted once, for the
// baselines that share one root among all their containers.
func (f *fixture) mountedOnce() (string, error) {
	if f.once == nil {
		r, err := rootfs.Mount(rootfs.Options{Image: f.image, WorkBase: filepath.Join(f.dir, "once")})
		if err != nil {
			return "", fmt.Errorf("fixture: %w", err)
		}
		f.once = r
	}
	return f.once.Path(), nil
}

// close unmounts what the fixture mounted and removes its directory.
func (f *fixture) close() error {
	var errs []error
	if f.once != nil {
		if err := f.once.Unmount(); err != nil {
			errs = append(errs, fmt.Errorf("fixture: %w", err))
		}
	}
	left := slices.DeleteFunc(testrootfs.MountsUnder(f.dir), func(m string) bool { return m == f.dir })
	if len(left) > 0 {
		// Leave the directory alone: removing it would recurse into them.
		errs = append(errs, fmt.Errorf("fixture: mounts left under %s: %v", f.dir, left))
		return errors.Join(errs...)
	}
	if f.tmpfs {
		if err := unix.Unmount(f.dir, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("fixture: unmount tmpfs: %w", err))
		}
	}
	if err := os.RemoveAll(f.dir); err != nil {
		errs = append(errs, fmt.Errorf("fixture: %w", err))
	}
	if l := testrootfs.LoopsBackedBy(f.image); len(l) > 0 {
		errs = append(errs, fmt.Errorf("fixture: loop devices left on %s: %v", f.image, l))
	}
	return errors.Join(errs...)
}

func randomTag() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// benchCtr is one container of a revision the bench lays out.
type benchCtr struct {
	name string
	// cmd is the init command line as lxc.init.cmd writes it.
	cmd string
	// lxc holds the lines of lxc.container.conf other than rootfs and init.
	lxc []string
	// run holds more run.json keys (auto_recovery, restart_policy, ...).
	run map[string]any
	// files are more files of the container's directory in the revision.
	files map[string][]byte
}

// upstreamLXC are the lines upstream's pvr template writes into every
// lxc.container.conf: the containers of the cold-start revision are the
// containers a device really runs.
var upstreamLXC = revtest.UpstreamLXC

// sleeperScript sleeps until SIGTERM, which it obeys at once: a shell that
// is PID 1 of its namespace only dies of a signal it traps, and `wait`
// (unlike a foreground sleep) lets the trap run immediately.
const sleeperScript = "trap 'exit 0' TERM; sleep 1000 & wait"

// The sleeper as lxc.init.cmd writes it, and as an argv.
const sleeperCmd = `/bin/sh "-c" "` + sleeperScript + `"`

var sleeperArgs = []string{"/bin/sh", "-c", sleeperScript}

// buildStorage lays out a device storage under dir with revision 0 made
// of ctrs in one group "app", every container's root volume being image.
func buildStorage(dir, image string, ctrs []benchCtr) error {
	rc := make([]revtest.Container, len(ctrs))
	for i, c := range ctrs {
		rc[i] = revtest.Container{Name: c.name, Cmd: c.cmd, LXC: c.lxc, Run: c.run, Files: c.files}
	}
	return revtest.Build(dir, image, nil, rc)
}

// reapOrphans waits, up to timeout, until this process has no children
// left, reaping the zombies among them. The runtimes the baselines run
// (runc run -d, lxc-start -d) leave their containers' inits and monitors
// to PID 1 — this process — when they exit. It waits for specific pids
// only, so it must run when none of this process's own children (os/exec,
// libcontainer) are alive.
func reapOrphans(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		all, zombies := testrootfs.Children(os.Getpid())
		for _, pid := range zombies {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		}
		if len(all) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes left after %v: %v", timeout, describe(all))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func describe(pids []int) []string {
	var out []string
	for _, p := range pids {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		out = append(out, fmt.Sprintf("%d:%s", p, strings.ReplaceAll(strings.TrimSpace(string(b)), "\x00", " ")))
	}
	return out
}

// cgroupDirs lists the cgroup directories, in every hierarchy and at any
// depth, whose name contains substr, deepest first so they can be removed
// in order.
func cgroupDirs(substr string) []string {
	var out []string
	_ = filepath.WalkDir("/sys/fs/cgroup", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.Contains(d.Name(), substr) {
			out = append(out, p)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return out
}

// removeCgroups removes the (empty) cgroup directories named with substr
// and reports the ones that cannot be removed.
func removeCgroups(substr string) error {
	var left []string
	for _, d := range cgroupDirs(substr) {
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
			left = append(left, d)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("cgroups left: %v", left)
	}
	return nil
}

// median of durations, in milliseconds.
func medianMs(ds []time.Duration) float64 {
	v := make([]float64, len(ds))
	for i, d := range ds {
		v[i] = float64(d) / 1e6
	}
	return median(v)
}

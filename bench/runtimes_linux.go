package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The baselines drive the runtimes' own command-line tools, as a user (or
// upstream Pantavisor, for LXC) would; these helpers hold what runc and
// LXC need around the commands the figures time.

// cmdOutput runs a command whose output goes to a file rather than a pipe:
// a container started with `runc run -d` inherits runc's stdout and
// stderr, and os/exec would wait for a pipe's writers — the container — to
// close it.
func cmdOutput(logPath string, name string, args ...string) error {
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer log.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logPath)
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// runcBench is a set of runc containers sharing one rootfs directory.
type runcBench struct {
	dir    string // bundles, state root, command log
	state  string
	cgroup string // absolute cgroup parent of the containers
	ids    []string
}

func newRuncBench(f *fixture, root string, n int, args []string) (*runcBench, error) {
	r := &runcBench{dir: filepath.Join(f.dir, "runc"), cgroup: "pvbench-runc-" + f.tag}
	r.state = filepath.Join(r.dir, "state")
	for i := range n {
		id := fmt.Sprintf("pvb-%s-%02d", f.tag, i)
		bundle := filepath.Join(r.dir, "bundles", id)
		if err := os.MkdirAll(bundle, 0o755); err != nil {
			return nil, fmt.Errorf("runc bundle: %w", err)
		}
		data, err := json.MarshalIndent(runcSpec(root, id, "/"+r.cgroup+"/"+id, args), "", "  ")
		if err != nil {
			return nil, fmt.Errorf("runc bundle: %w", err)
		}
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
			return nil, fmt.Errorf("runc bundle: %w", err)
		}
		r.ids = append(r.ids, id)
	}
	return r, nil
}

// runcSpec is the OCI configuration equivalent to what this project makes
// of upstream's lxc.container.conf (upstreamLXC): new mount, pid and uts
// namespaces (upstream keeps the net and ipc ones), every capability (nil
// leaves them untouched), every device allowed, and the same mounts:
// /proc, /dev, /dev/pts, /dev/shm, then what lxc.mount.auto = proc sys:rw
// cgroup and the /run tmpfs entry ask.
func runcSpec(root, id, cgroupsPath string, args []string) *specs.Spec {
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5", "max=1024"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"rw", "nodev", "relatime", "mode=755"}},
	}
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: args, Cwd: "/",
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=lxc"},
		},
		Root:     &specs.Root{Path: root},
		Hostname: id,
		Mounts:   ms,
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.UTSNamespace},
			},
			CgroupsPath:   cgroupsPath,
			Resources:     &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}},
			ReadonlyPaths: []string{"/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// startAll runs `runc run -d` for each container, one after the other:
// each returns once its container's process runs.
func (r *runcBench) startAll() error {
	for _, id := range r.ids {
		if err := r.runc("run", "-d", "--bundle", filepath.Join(r.dir, "bundles", id), id); err != nil {
			return err
		}
	}
	return nil
}

func (r *runcBench) runc(args ...string) error {
	return cmdOutput(filepath.Join(r.dir, "runc.log"), "runc", append([]string{"--root", r.state}, args...)...)
}

// checkRunning verifies, after the timing, that every container still
// runs: a start that "succeeded" with a dead container would flatter runc.
func (r *runcBench) checkRunning() error {
	for _, id := range r.ids {
		out, err := exec.Command("runc", "--root", r.state, "state", id).Output()
		if err != nil {
			return fmt.Errorf("runc state %s: %w", id, err)
		}
		var st specs.State
		if err := json.Unmarshal(out, &st); err != nil {
			return fmt.Errorf("runc state %s: %w", id, err)
		}
		if st.Status != specs.StateRunning {
			return fmt.Errorf("runc container %s is %s", id, st.Status)
		}
	}
	return nil
}

// cleanup kills every container (their inits are this process's children
// once runc has exited: it is PID 1), reaps them, deletes them and removes
// their cgroups.
func (r *runcBench) cleanup() error {
	var errs []error
	for _, id := range r.ids {
		if _, err := os.Stat(filepath.Join(r.state, id)); err != nil {
			continue // never created
		}
		_ = r.runc("kill", id, "KILL") // fails for a container already stopped
	}
	if err := reapOrphans(10 * time.Second); err != nil {
		errs = append(errs, fmt.Errorf("runc cleanup: %w", err))
	}
	for _, id := range r.ids {
		if _, err := os.Stat(filepath.Join(r.state, id)); err != nil {
			continue
		}
		if err := r.runc("delete", "--force", id); err != nil {
			errs = append(errs, fmt.Errorf("runc cleanup: %w", err))
		}
	}
	if err := removeCgroups(r.cgroup); err != nil {
		errs = append(errs, fmt.Errorf("runc cleanup: %w", err))
	}
	return errors.Join(errs...)
}

// lxcBench is a set of LXC containers (an lxcpath) sharing one rootfs
// directory.
type lxcBench struct {
	path  string // the lxcpath
	names []string
	// args is the init's argv, given on lxc-start's command line: LXC 5
	// splits lxc.init.cmd at spaces and keeps quotes as part of the
	// words, so it cannot express `sh -c "a command"`.
	args []string
	// What existed before the figure, so that cleanup removes only what
	// LXC made for it: /run/lxc, and the lxc.pivot cgroups LXC moves its
	// monitors into while a container stops (and never removes).
	hadRunLXC bool
	hadPivot  map[string]bool
}

// LXC keeps lock files in lxcRunDir/lock, per lxcpath.
const (
	lxcRunDir   = "/run/lxc"
	lxcLockRoot = lxcRunDir + "/lock"
	lxcPivot    = "lxc.pivot"
)

// newLXCBench writes one config per container: the rootfs directory, the
// uts name and the given lines, plus what running outside Pantavisor needs
// (no AppArmor profile of its own, no console: this project gives the
// init no terminal either). args is the init's argv.
func newLXCBench(f *fixture, root string, n int, args []string, lines []string) (*lxcBench, error) {
	l := &lxcBench{path: filepath.Join(f.dir, "lxc"), args: args, hadPivot: map[string]bool{}}
	if _, err := os.Stat(lxcRunDir); err == nil {
		l.hadRunLXC = true
	}
	for _, d := range cgroupDirs(lxcPivot) {
		l.hadPivot[d] = true
	}
	for i := range n {
		name := fmt.Sprintf("pvb-%s-%02d", f.tag, i)
		conf := append([]string{
			"lxc.uts.name = " + name,
			"lxc.rootfs.path = dir:" + root,
			"lxc.apparmor.profile = unconfined",
			"lxc.console.path = none",
		}, lines...)
		dir := filepath.Join(l.path, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("lxc config: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config"), []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("lxc config: %w", err)
		}
		l.names = append(l.names, name)
	}
	return l, nil
}

// minimalLXC are the lines that make LXC's container match this project's
// minimal one: new mount, pid and uts namespaces only (upstream keeps
// user, net and ipc) and /proc mounted.
var minimalLXC = []string{
	"lxc.namespace.keep = user net ipc",
	"lxc.mount.auto = proc",
	"lxc.environment = PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}

func (l *lxcBench) lxc(tool, name string, args ...string) error {
	return cmdOutput(filepath.Join(l.path, "lxc.log"), tool, append([]string{"-n", name, "-P", l.path}, args...)...)
}

// startAll runs `lxc-start -d` for each container, one after the other:
// each returns once LXC reports its container RUNNING.
func (l *lxcBench) startAll() error {
	for _, n := range l.names {
		if err := l.lxc("lxc-start", n, append([]string{"-d", "--"}, l.args...)...); err != nil {
			return err
		}
	}
	return nil
}

// checkRunning verifies, after the timing, that every container still
// runs.
func (l *lxcBench) checkRunning() error {
	for _, n := range l.names {
		out, err := exec.Command("lxc-info", "-n", n, "-P", l.path, "-s", "-H").Output()
		if err != nil {
			return fmt.Errorf("lxc-info %s: %w", n, err)
		}
		if s := strings.TrimSpace(string(out)); s != "RUNNING" {
			return fmt.Errorf("lxc container %s is %s", n, s)
		}
	}
	return nil
}

// cleanup kills every container, reaps LXC's monitors (orphaned to this
// process, PID 1) and removes what LXC leaves: cgroups named after the
// containers and lock files. lxc-destroy is not used: it would delete
// the rootfs directory, which belongs to the fixture.
func (l *lxcBench) cleanup(tag string) error {
	var errs []error
	for _, n := range l.names {
		out, _ := exec.Command("lxc-info", "-n", n, "-P", l.path, "-s", "-H").Output()
		if strings.TrimSpace(string(out)) == "STOPPED" {
			continue
		}
		if err := l.lxc("lxc-stop", n, "-k"); err != nil {
			errs = append(errs, fmt.Errorf("lxc cleanup: %w", err))
		}
	}
	if err := reapOrphans(10 * time.Second); err != nil {
		errs = append(errs, fmt.Errorf("lxc cleanup: %w", err))
	}
	if err := removeCgroups(tag); err != nil {
		errs = append(errs, fmt.Errorf("lxc cleanup: %w", err))
	}
	locks := filepath.Join(lxcLockRoot, l.path)
	if err := os.RemoveAll(locks); err != nil {
		errs = append(errs, fmt.Errorf("lxc cleanup: %w", err))
	}
	// The lock directories of the lxcpath's parents, and /run/lxc if this
	// figure made it, when nothing else uses them.
	stop := lxcLockRoot + "/"
	if !l.hadRunLXC {
		stop = "/run/"
	}
	for d := filepath.Dir(locks); strings.HasPrefix(d, stop); d = filepath.Dir(d) {
		if os.Remove(d) != nil {
			break
		}
	}
	for _, d := range cgroupDirs(lxcPivot) {
		if !l.hadPivot[d] && filepath.Base(d) == lxcPivot {
			// Fails, harmlessly, if some other LXC user has put a
			// process or a cgroup in it meanwhile.
			_ = unix.Rmdir(d)
		}
	}
	return errors.Join(errs...)
}

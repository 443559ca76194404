package driver

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/nofollow"
	"github.com/pantavisor/pv/spec"
)

// Defaults for Options.
const (
	DefaultStateRoot    = "/run/pantavisor/containers"
	DefaultCgroupParent = "pantavisor"
)

// killWait bounds how long Stop and Destroy wait for a container to die
// after SIGKILL (a process stuck in uninterruptible sleep can outlive it).
const killWait = 10 * time.Second

var (
	// ErrNotStarted is returned by operations that need a started init.
	ErrNotStarted = errors.New("container not started")
	// ErrNotRunning is returned when signalling a container whose init has
	// exited.
	ErrNotRunning = errors.New("container not running")
	// ErrDestroyed is returned by operations on a destroyed container.
	ErrDestroyed = errors.New("container destroyed")
	// ErrHostNetwork is returned by NetnsPath for a container that shares
	// the host's network namespace.
	ErrHostNetwork = errors.New("container shares the host network namespace")
	// ErrKillTimeout is returned when a container survives SIGKILL for
	// longer than the driver waits.
	ErrKillTimeout = errors.New("container did not die after SIGKILL")
)

// Options configure a Driver.
type Options struct {
	// StateRoot is where libcontainer keeps per-container state
	// (DefaultStateRoot when empty). It must be on a filesystem that
	// allows fifos; a tmpfs such as /run is best.
	StateRoot string
	// CgroupParent is the cgroup under which each container gets its own
	// (DefaultCgroupParent when empty). A relative path is made under the
	// caller's own cgroup in each hierarchy; an absolute one under the
	// hierarchy root. Two drivers must not share it while both are in use.
	CgroupParent string
	// NoPivotRoot enters each container's root by moving it onto / and
	// chroot, not pivot_root(2), which the kernel refuses while the
	// current root is the initramfs (rootfs): the case of an embedded
	// device whose PID 1 runs from its initramfs. The container's old
	// root is then not detached from its mount namespace, which is why
	// pivot_root is kept wherever it works.
	NoPivotRoot bool
	// Log receives what the driver cannot do but does not fail a start
	// for (the containers' task limit not set); nil discards it.
	Log *slog.Logger
}

// Driver creates containers with one state root and one cgroup parent. It
// is safe for concurrent use.
type Driver struct {
	stateRoot    string
	cgroupParent string
	// cgroupMu is held for reading while a container's cgroups are made
	// (Start) and for writing while empty parent cgroups are removed, so
	// a removal never races a creation below the same parent.
	cgroupMu sync.RWMutex
	// bounding is the capability bounding set of this process: containers
	// cannot be given more.
	bounding []string
	// cgroupns: the kernel has cgroup namespaces; containers get one.
	cgroupns bool
	// cgroupV2: the host has the unified cgroup v2 hierarchy only.
	cgroupV2 bool
	// parentDirs are the parent cgroup directories (every hierarchy, every
	// level of CgroupParent) seen under any container, guarded by
	// parentMu. Every Destroy tries to remove
	// them all, so that a container whose own paths are unknown by then
	// (its start failed half-way, libcontainer forgot them) still leaves
	// nothing behind once the last container is gone.
	parentMu   sync.Mutex
	parentDirs map[string]struct{}
	// initMakesDev leaves /dev to libcontainer's init (tests compare the
	// two).
	initMakesDev bool
	noPivotRoot  bool
	log          *slog.Logger
}

// New returns a Driver, creating its state root (mode 0700).
//
// It sets GOMAXPROCS=1 in the process environment when the variable is
// not set: libcontainer hands that variable to every container's init, a
// Go program that runs one thread's worth of work, and whose runtime would
// otherwise work out its CPU limit from /proc/self/mountinfo at each start,
// a file that grows with every container. The running process is not
// affected; only programs it starts read the variable.
func New(o Options) (*Driver, error) {
	if os.Getenv("GOMAXPROCS") == "" {
		os.Setenv("GOMAXPROCS", "1")
	}
	d := &Driver{stateRoot: o.StateRoot, cgroupParent: o.CgroupParent, noPivotRoot: o.NoPivotRoot, log: o.Log}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.stateRoot == "" {
		d.stateRoot = DefaultStateRoot
	}
	if d.cgroupParent == "" {
		d.cgroupParent = DefaultCgroupParent
	}
	if err := os.MkdirAll(d.stateRoot, 0o700); err != nil {
		return nil, fmt.Errorf("create state root: %w", err)
	}
	b, err := ownBounding()
	if err != nil {
		return nil, err
	}
	d.bounding = b
	// What libcontainer checks before it would clone one.
	_, err = os.Stat("/proc/self/ns/cgroup")
	d.cgroupns = err == nil
	d.cgroupV2 = cgroups.IsCgroup2UnifiedMode()
	return d, nil
}

// ownBounding reads this process's capability bounding set.
func ownBounding() ([]string, error) {
	caps, err := capability.NewPid2(0)
	if err == nil {
		err = caps.Load()
	}
	if err != nil {
		return nil, fmt.Errorf("read capability bounding set: %w", err)
	}
	var out []string
	for _, c := range capability.ListKnown() {
		if caps.Get(capability.BOUNDING, c) {
			out = append(out, c.String())
		}
	}
	return out, nil
}

// CgroupParent is the cgroup parent of this driver's containers.
func (d *Driver) CgroupParent() string { return d.cgroupParent }

// StateRoot is the libcontainer state root of this driver.
func (d *Driver) StateRoot() string { return d.stateRoot }

// Config describes one container to create.
type Config struct {
	// Name is the container's id: unique within the driver, and its
	// default hostname. libcontainer allows [a-zA-Z0-9_+\-.] only.
	Name string
	// Spec is what to run.
	Spec *spec.Container
	// Rootfs is the mounted root filesystem (see runtime/rootfs).
	Rootfs string
	// ConsoleLog receives the init's stdout and stderr, appended; it and
	// its parent directories are created. Empty discards them.
	ConsoleLog string
	// ResolveSource maps bind-mount sources (see Input.ResolveSource).
	ResolveSource func(string) (string, error)
	// Labels are kept with the container's state ("key=value"), where a
	// supervisor that adopts it (Adopt) reads them back.
	Labels []string
}

// Container is one libcontainer container and at most one run of its init
// process. Its methods are safe for concurrent use; in particular Wait may
// block in one goroutine while Stop, Signal or Destroy run in others.
type Container struct {
	d    *Driver
	name string
	lc   *libcontainer.Container
	tr   *Translated
	dev  *devTree // nil: libcontainer's init makes /dev
	log  string

	mu        sync.Mutex
	started   bool
	destroyed bool
	proc      *libcontainer.Process
	// adoptedPid is the init of a container taken over from a previous
	// supervisor (Adopt), which has no Process of ours; adoptedStart is
	// its start time (libcontainer's InitProcessStartTime), which tells
	// PID 1's record of its exit from one of an earlier process that had
	// its pid.
	adoptedPid   int
	adoptedStart uint64
	created      time.Time
	// paths are the container's cgroup directories, read while it ran:
	// libcontainer may no longer report them for a container that exited
	// long before Destroy, and Destroy needs them to remove the parents.
	paths map[string]string

	done    chan struct{} // closed when the init has been waited for
	exit    Exit
	waitErr error
	// unkillable: a SIGKILL was waited for killWait and the init did not
	// end (uninterruptible sleep). Under mu.
	unkillable bool
}

// Translate returns the libcontainer description Create would use.
func (d *Driver) Translate(c Config) (*Translated, error) {
	return Translate(Input{
		Name: c.Name, Spec: c.Spec, Rootfs: c.Rootfs,
		CgroupParent: d.cgroupParent, ResolveSource: c.ResolveSource,
		Bounding: d.bounding, CgroupNamespaces: d.cgroupns, CgroupV2: d.cgroupV2,
	})
}

// Create translates c and creates the container's state; no process runs
// yet. A stopped container left with the same name by an earlier run (a
// crash) is destroyed first; a live one is an error.
func (d *Driver) Create(c Config) (*Container, error) {
	tr, err := d.Translate(c)
	if err != nil {
		return nil, err
	}
	tr.Config.NoPivotRoot = d.noPivotRoot
	tr.Config.Labels = append(tr.Config.Labels, c.Labels...)
	var dev *devTree
	if !d.initMakesDev {
		dev = splitDev(tr.Config, d.devDir(c.Name))
	}
	if err := prepareMappedRoot(tr.Config); err != nil {
		return nil, fmt.Errorf("create container %s: %w", c.Name, err)
	}
	lc, err := libcontainer.Create(d.stateRoot, c.Name, tr.Config)
	if errors.Is(err, libcontainer.ErrExist) {
		if rerr := d.removeStale(c.Name, tr.Config); rerr != nil {
			return nil, fmt.Errorf("create container %s: %w", c.Name, errors.Join(err, rerr))
		}
		lc, err = libcontainer.Create(d.stateRoot, c.Name, tr.Config)
	}
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", c.Name, err)
	}
	return &Container{d: d, name: c.Name, lc: lc, tr: tr, dev: dev, log: c.ConsoleLog, done: make(chan struct{})}, nil
}

// devDir is where a container's /dev tree is made while it starts: beside
// libcontainer's state directories, under a name no container id can
// have ('@' is not allowed in them).
func (d *Driver) devDir(name string) string {
	return filepath.Join(d.stateRoot, name+"@dev")
}

func (d *Driver) removeStale(name string, cfg *configs.Config) error {
	old, err := libcontainer.Load(d.stateRoot, name)
	if errors.Is(err, libcontainer.ErrNotExist) {
		return d.removeHalfCreated(name, cfg)
	}
	if err != nil {
		return fmt.Errorf("load stale container: %w", err)
	}
	st, err := old.Status()
	if err != nil {
		return fmt.Errorf("load stale container: %w", err)
	}
	if st != libcontainer.Stopped {
		return fmt.Errorf("stale container is %s", st)
	}
	paths := cgroupPaths(old)
	if err := old.Destroy(); err != nil {
		return fmt.Errorf("destroy stale container: %w", err)
	}
	d.removeParents(paths)
	return nil
}

// removeHalfCreated removes what a supervisor that died between
// libcontainer's Create and the start (which writes the state) left under
// name: a state directory with no state in it, and maybe the cgroup of an
// init that never ran the container's command (cfg says where it is).
// Whatever is in that cgroup is killed first.
func (d *Driver) removeHalfCreated(name string, cfg *configs.Config) error {
	if cfg.Cgroups != nil {
		if m, err := manager.New(cfg.Cgroups); err == nil && m.Exists() {
			deadline := time.Now().Add(killWait)
			for {
				pids, err := m.GetAllPids()
				if err != nil || len(pids) == 0 {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("remove half-created container %s: %d processes survive SIGKILL: %w", name, len(pids), ErrKillTimeout)
				}
				for _, pid := range pids {
					_ = unix.Kill(pid, unix.SIGKILL)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := m.Destroy(); err != nil {
				return fmt.Errorf("remove half-created container %s: %w", name, err)
			}
		}
	}
	if err := os.RemoveAll(filepath.Join(d.stateRoot, name)); err != nil {
		return fmt.Errorf("remove half-created container %s: %w", name, err)
	}
	return nil
}

// Name is the container's name.
func (c *Container) Name() string { return c.name }

// Label returns the value of a label given at Create ("key=value"), as
// kept in the container's state.
func (c *Container) Label(key string) (string, bool) {
	for _, l := range c.tr.Config.Labels {
		if k, v, ok := strings.Cut(l, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// Config is the libcontainer configuration the container was created with.
func (c *Container) Config() *configs.Config { return c.tr.Config }

// Start creates the init process: namespaces, cgroups, mounts and the
// pivot into the rootfs are done, and the process waits before executing
// the user command until Exec is called. In between, NetnsPath names the
// network namespace to plumb.
func (c *Container) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.destroyed {
		return fmt.Errorf("start container %s: %w", c.name, ErrDestroyed)
	}
	if c.started {
		return fmt.Errorf("start container %s: already started", c.name)
	}
	var null *os.File
	if c.dev != nil {
		if err := c.dev.build(); err != nil {
			return fmt.Errorf("start container %s: %w", c.name, err)
		}
		// The init has its own copy once it started (or failed to). A
		// tree that cannot be detached now is tried again, and reported,
		// by Destroy.
		defer func() { _ = c.dev.remove() }()
		if null = c.dev.null(); null != nil {
			defer null.Close()
		}
	}
	out, err := openConsole(c.log, null)
	if err != nil {
		return fmt.Errorf("start container %s: %w", c.name, err)
	}
	// The init inherits its own descriptor; ours is not needed after start.
	defer out.Close()
	p := &libcontainer.Process{
		Args: c.tr.Args, Env: c.tr.Env, Cwd: c.tr.Cwd, UID: c.tr.UID, GID: c.tr.GID,
		Stdout: out, Stderr: out, Init: true,
	}
	if null != nil {
		// What libcontainer's init does when it makes /dev: the
		// container's streams that are /dev/null are its own node.
		p.Stdin = null
	}
	c.d.cgroupMu.RLock()
	err = c.lc.Start(p)
	c.paths = cgroupPaths(c.lc)
	if err != nil && len(c.paths) == 0 {
		// A start that failed in the init: libcontainer removed the
		// container's cgroups and forgot them, but not the parents it
		// made for them.
		c.paths = plannedCgroupPaths(c.lc)
	}
	c.d.noteParents(c.paths)
	if err == nil {
		// Before Exec: the container's command has not run yet. Held
		// under cgroupMu, the parent cannot be removed meanwhile.
		c.d.limitParentOrLog(c.paths)
	}
	c.d.cgroupMu.RUnlock()
	if err != nil {
		return fmt.Errorf("start container %s: %w", c.name, err)
	}
	c.started, c.proc = true, p
	go c.waitInit(p)
	return nil
}

// waitInit reaps the init process (it is our child: libcontainer clones it
// with CLONE_PARENT) and publishes how it ended.
func (c *Container) waitInit(p *libcontainer.Process) {
	defer close(c.done)
	defer func() {
		if r := recover(); r != nil {
			// No logger here: the stack travels in the error, which
			// the engine logs.
			c.waitErr = fmt.Errorf("wait container %s: panic: %v\n%s", c.name, r, debug.Stack())
		}
	}()
	ps, err := p.Wait()
	at := time.Now()
	if ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && (ws.Exited() || ws.Signaled()) {
			c.exit = exitFromStatus(ws, at)
			return
		}
	}
	if err == nil {
		err = errors.New("no exit status")
	}
	c.waitErr = fmt.Errorf("wait container %s: %w", c.name, err)
}

func openConsole(path string, null *os.File) (*os.File, error) {
	if path == "" && null != nil {
		// Close-on-exec, like every descriptor Go opens: other inits
		// may be started at this moment.
		fd, err := unix.FcntlInt(null.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open console: %w", err)
		}
		return os.NewFile(uintptr(fd), null.Name()), nil
	}
	if path == "" {
		f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("open console: %w", err)
		}
		return f, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create console log dir: %w", err)
	}
	// The log directory may be bind-mounted into the container, which
	// may have put a symlink (to the storage's state JSON, say), a FIFO
	// (whose open would wait for a reader for ever) or a device node at
	// the log's name: only a regular file there is appended to; anything
	// else is removed, never followed, and the log made anew.
	f, err := nofollow.Append(path, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open console log: %w", err)
	}
	return f, nil
}

// Pid is the init's pid in the caller's pid namespace, 0 before Start.
func (c *Container) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.adoptedPid != 0 {
		return c.adoptedPid
	}
	if c.proc == nil {
		return 0
	}
	pid, err := c.proc.Pid()
	if err != nil {
		return 0
	}
	return pid
}

// NetnsPath is the path of the container's own network namespace
// (/proc/<pid>/ns/net), valid while the init lives. It returns
// ErrHostNetwork when the container keeps the host's.
func (c *Container) NetnsPath() (string, error) {
	if !c.tr.Config.Namespaces.Contains(configs.NEWNET) {
		return "", ErrHostNetwork
	}
	st, err := c.lc.State()
	if err != nil {
		return "", fmt.Errorf("read container %s state: %w", c.name, err)
	}
	p := st.NamespacePaths[configs.NEWNET]
	if p == "" {
		return "", fmt.Errorf("read container %s netns: %w", c.name, ErrNotStarted)
	}
	return p, nil
}

// Exec lets a started init execute the user command. It returns once the
// command has been executed (or the init died): until then the init is
// libcontainer's Go code, which would turn a signal such as SIGTERM into
// an exit status of 2.
func (c *Container) Exec() error {
	c.mu.Lock()
	started, destroyed := c.started, c.destroyed
	c.mu.Unlock()
	if destroyed {
		return fmt.Errorf("exec container %s: %w", c.name, ErrDestroyed)
	}
	if !started {
		return fmt.Errorf("exec container %s: %w", c.name, ErrNotStarted)
	}
	if err := c.lc.Exec(); err != nil {
		return fmt.Errorf("exec container %s: %w", c.name, err)
	}
	c.waitExecve()
	return nil
}

// initComm is the name libcontainer's nsexec gives the init until execve.
const initComm = "runc:[2:INIT]"

// waitExecve waits until the init has replaced libcontainer's code with
// the user command (its comm changes), or has exited. libcontainer's Exec
// returns as soon as the init signalled it is about to execve.
func (c *Container) waitExecve() {
	pid := c.Pid()
	if pid <= 0 {
		return
	}
	commPath := "/proc/" + strconv.Itoa(pid) + "/comm"
	deadline := time.Now().Add(time.Second)
	for delay := 100 * time.Microsecond; time.Now().Before(deadline); delay = min(2*delay, time.Millisecond) {
		b, err := os.ReadFile(commPath)
		if err != nil || strings.TrimSpace(string(b)) != initComm {
			return
		}
		select {
		case <-c.done:
			return
		case <-time.After(delay):
		}
	}
}

// Run is Start followed by Exec. If Exec fails the init is killed.
func (c *Container) Run() error {
	if err := c.Start(); err != nil {
		return err
	}
	if err := c.Exec(); err != nil {
		_ = c.kill()
		return err
	}
	return nil
}

// Done is closed when the init has exited and been reaped. It never closes
// for a container that was not started.
func (c *Container) Done() <-chan struct{} { return c.done }

// Wait blocks until the init exits and returns how it ended.
func (c *Container) Wait() (Exit, error) {
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if !started {
		return Exit{}, fmt.Errorf("wait container %s: %w", c.name, ErrNotStarted)
	}
	<-c.done
	return c.exit, c.waitErr
}

// Signal sends sig to the init. When the container shares the caller's pid
// namespace, SIGKILL goes to every process in its cgroup.
func (c *Container) Signal(sig syscall.Signal) error {
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if !started {
		return fmt.Errorf("signal container %s: %w", c.name, ErrNotStarted)
	}
	select {
	case <-c.done:
		return fmt.Errorf("signal container %s: %w", c.name, ErrNotRunning)
	default:
	}
	if err := c.lc.Signal(sig); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) || errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("signal container %s: %w", c.name, ErrNotRunning)
		}
		return fmt.Errorf("signal container %s: %w", c.name, err)
	}
	return nil
}

// Stop sends SIGTERM, waits up to timeout for the init to exit, then sends
// SIGKILL. An init that is PID 1 of its namespace ignores SIGTERM unless it
// installed a handler, so expect the kill. Stopping an exited container
// returns its exit.
func (c *Container) Stop(timeout time.Duration) (Exit, error) {
	if err := c.Signal(unix.SIGTERM); err != nil && !errors.Is(err, ErrNotRunning) {
		return Exit{}, fmt.Errorf("stop: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return c.exit, c.waitErr
	case <-t.C:
	}
	if err := c.kill(); err != nil {
		return Exit{}, fmt.Errorf("stop: %w", err)
	}
	return c.exit, c.waitErr
}

// kill sends SIGKILL and waits for the init to be reaped.
func (c *Container) kill() error {
	if err := c.Signal(unix.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	t := time.NewTimer(killWait)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case <-t.C:
		c.mu.Lock()
		c.unkillable = true
		c.mu.Unlock()
		return fmt.Errorf("kill container %s: %w", c.name, ErrKillTimeout)
	}
}

// Destroy kills the container if it still runs, then removes its cgroups
// (and the parent cgroup directories, when no other container uses them)
// and its libcontainer state. Anything written only inside the
// container's namespaces is gone. Destroy is idempotent.
func (c *Container) Destroy() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.destroyed {
		return nil
	}
	if c.started {
		select {
		case <-c.done:
		default:
			if c.unkillable {
				// Killed and waited for in vain already: another
				// wait, holding mu, would end the same way.
				return fmt.Errorf("destroy: kill container %s: %w", c.name, ErrKillTimeout)
			}
			if err := c.killLocked(); err != nil {
				return fmt.Errorf("destroy: %w", err)
			}
		}
	}
	paths := cgroupPaths(c.lc)
	if len(paths) == 0 {
		paths = c.paths
	}
	if err := c.lc.Destroy(); err != nil {
		return fmt.Errorf("destroy container %s: %w", c.name, err)
	}
	c.d.removeParents(paths)
	c.destroyed = true
	if c.dev != nil {
		if err := c.dev.remove(); err != nil {
			return fmt.Errorf("destroy container %s: %w", c.name, err)
		}
	}
	return nil
}

// killLocked is kill for callers holding c.mu (Signal would deadlock).
func (c *Container) killLocked() error {
	if err := c.lc.Signal(unix.SIGKILL); err != nil &&
		!errors.Is(err, libcontainer.ErrNotRunning) && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill container %s: %w", c.name, err)
	}
	t := time.NewTimer(killWait)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case <-t.C:
		c.unkillable = true
		return fmt.Errorf("kill container %s: %w", c.name, ErrKillTimeout)
	}
}

// plannedCgroupPaths returns the cgroup paths libcontainer computes for the
// container's configuration, whether or not they exist.
func plannedCgroupPaths(lc *libcontainer.Container) map[string]string {
	cfg := lc.Config()
	if cfg.Cgroups == nil {
		return nil
	}
	m, err := manager.New(cfg.Cgroups)
	if err != nil {
		return nil
	}
	return m.GetPaths()
}

func cgroupPaths(lc *libcontainer.Container) map[string]string {
	st, err := lc.State()
	if err != nil {
		return nil
	}
	// A copy: libcontainer's Destroy empties the map it returned.
	return maps.Clone(st.CgroupPaths)
}

// parentsOf returns the parent cgroup directories of a container's cgroup
// paths, deepest first within each hierarchy.
func (d *Driver) parentsOf(paths map[string]string) []string {
	parent := strings.Trim(filepath.Clean(d.cgroupParent), "/")
	if parent == "" || parent == "." {
		return nil
	}
	depth := len(strings.Split(parent, "/"))
	var out []string
	for _, p := range paths {
		if p == "" || !strings.HasSuffix(filepath.Dir(p), "/"+parent) {
			continue
		}
		dir := p
		for range depth {
			dir = filepath.Dir(dir)
			out = append(out, dir)
		}
	}
	return out
}

// noteParents remembers the parent directories of a started container.
func (d *Driver) noteParents(paths map[string]string) {
	dirs := d.parentsOf(paths)
	d.parentMu.Lock()
	defer d.parentMu.Unlock()
	if d.parentDirs == nil {
		d.parentDirs = map[string]struct{}{}
	}
	for _, dir := range dirs {
		d.parentDirs[dir] = struct{}{}
	}
}

// removeParents removes the (empty) parent cgroup directories libcontainer
// leaves behind: those of the container's own cgroup paths and every one
// this driver has seen. A parent still in use by another container is not
// empty and stays.
func (d *Driver) removeParents(paths map[string]string) {
	d.cgroupMu.Lock()
	defer d.cgroupMu.Unlock()
	d.parentMu.Lock()
	dirs := d.parentsOf(paths)
	for dir := range d.parentDirs {
		dirs = append(dirs, dir)
	}
	d.parentMu.Unlock()
	deepestFirst(dirs)
	done := map[string]bool{}
	for _, dir := range dirs {
		if done[dir] {
			continue
		}
		done[dir] = true
		// In use (or already gone): the next Destroy tries again, and
		// Close at the end.
		_ = rmdirCgroup(dir, time.Now().Add(10*time.Millisecond))
	}
}

// deepestFirst orders cgroup directories so that a nested parent goes
// before its own parent.
func deepestFirst(dirs []string) {
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
}

// closeWait bounds how long Close waits for the kernel to finish offlining
// the last containers' cgroups before their parents can be removed.
const closeWait = 2 * time.Second

// Close removes the parent cgroup directories the driver has seen, once
// its containers are destroyed; call it when the device stops. Every
// Destroy already tries, briefly, but on a busy machine the kernel can
// take longer to offline the last container's cgroups (the parent answers
// EBUSY while it looks empty), and the parent would be left behind. Close
// waits up to closeWait for that, and names what is still there: a parent
// holding a child cgroup (a container not destroyed) or one still busy.
// It can be called again.
func (d *Driver) Close() error {
	d.cgroupMu.Lock()
	defer d.cgroupMu.Unlock()
	d.parentMu.Lock()
	dirs := slices.Collect(maps.Keys(d.parentDirs))
	d.parentMu.Unlock()
	deepestFirst(dirs)
	deadline := time.Now().Add(closeWait)
	var left []string
	for _, dir := range dirs {
		if err := rmdirCgroup(dir, deadline); err != nil && !errors.Is(err, unix.ENOENT) {
			left = append(left, fmt.Sprintf("%s: %v", dir, err))
			continue
		}
		d.parentMu.Lock()
		delete(d.parentDirs, dir)
		d.parentMu.Unlock()
	}
	if len(left) > 0 {
		return fmt.Errorf("container cgroups left: %s", strings.Join(left, "; "))
	}
	return nil
}

// rmdirCgroup removes an empty cgroup directory. cgroup v1 answers EBUSY
// both for a directory with child cgroups (in use by another container:
// final) and for one whose just-removed child the kernel is still
// offlining, asynchronously (the directory looks empty): only the latter
// is retried, until the deadline.
func rmdirCgroup(dir string, deadline time.Time) error {
	for {
		err := unix.Rmdir(dir)
		if !errors.Is(err, unix.EBUSY) || hasSubdir(dir) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

// hasSubdir reports whether dir holds a directory (a child cgroup).
func hasSubdir(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.IsDir() {
			return true
		}
	}
	return false
}

// DeviceCgroupParent names the cgroup parent of a device's containers after
// its storage directory, so that two devices on one host (two appengine
// instances, a test and a benchmark) never share one.
func DeviceCgroupParent(storageDir string) string {
	sum := sha256.Sum256([]byte(storageDir))
	return "pantavisor-" + hex.EncodeToString(sum[:4])
}

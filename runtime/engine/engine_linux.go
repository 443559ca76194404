// Package engine puts the runtime mechanisms together for the actors: a
// container's root filesystem (runtime/rootfs), its volumes and storage
// directories, its libcontainer container (runtime/driver) and its eth0
// from a pool lease (network/link), from the revision's model and storage;
// Pools sets up a pool's bridge and rules (network/link, network/nat).
//
// It does not import the actors: it returns its concrete types, and
// internal/wire adapts Engine and Pools to actors.Engine and
// actors.PoolNet.
package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/network/link"
	"github.com/pantavisor/pv/runtime/driver"
	"github.com/pantavisor/pv/runtime/rootfs"
	"github.com/pantavisor/pv/spec"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// overlayVolume is the storage entry upstream's template uses for the
// container's writable layer.
const overlayVolume = "lxc-overlay"

// Engine mounts and runs the containers of one revision.
type Engine struct {
	Layout storage.Layout
	Rev    string
	State  *state.State
	Driver *driver.Driver
	// WorkDir holds one directory per container with its mountpoints; it
	// must be private to this process's mount namespace.
	WorkDir string
	// CtrlSocket, when set, is bind-mounted into every container at
	// /pantavisor/pv-ctrl, where upstream containers expect it.
	CtrlSocket string
	Log        *slog.Logger
	// Lowers shares the read-only squashfs mounts of objects between the
	// containers that use them (see rootfs.Lowers); nil: the engine makes
	// its own, in WorkDir/@lowers, at the first Mount.
	Lowers *rootfs.Lowers

	lowersOnce sync.Once
	// warm holds one reference of the engine's own to every squashfs
	// object a Mount used, until Close: a container stopped and started
	// again (or mounted afresh after a failure) finds its image mounted
	// and its page cache warm, instead of decompressing its init again.
	// It costs a loop device and a squashfs mount per object of the
	// revision, whose containers mostly run anyway.
	warmMu sync.Mutex
	warm   map[string]*rootfs.Lower
	closed bool
}

// keepWarm takes the engine's reference to image when it has none yet.
// Failing to is not an error: the image is mounted (its container holds
// it) and only a later start may be slower.
func (e *Engine) keepWarm(image string) {
	if kind, err := rootfs.Detect(image); err != nil || kind != rootfs.Squashfs {
		return
	}
	e.warmMu.Lock()
	defer e.warmMu.Unlock()
	if _, ok := e.warm[image]; ok || e.closed {
		return
	}
	lw, err := e.lowers().Acquire(image)
	if err != nil {
		e.Log.Warn("keep image mounted", "image", image, "err", err)
		return
	}
	if e.warm == nil {
		e.warm = map[string]*rootfs.Lower{}
	}
	e.warm[image] = lw
}

// Close releases the images the engine kept mounted; those no container
// uses any more are unmounted. Call it once every container is unmounted
// (the revision stopped). Mounts after Close keep nothing warm.
func (e *Engine) Close() error {
	e.warmMu.Lock()
	defer e.warmMu.Unlock()
	e.closed = true
	var errs []error
	for image, lw := range e.warm {
		if err := lw.Release(); err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", image, err))
		}
	}
	e.warm = nil
	return errors.Join(errs...)
}

// lowersDir is the directory of the engine's own Lowers inside WorkDir.
// '@' is not allowed in libcontainer ids, so no container is named so.
const lowersDir = "@lowers"

func (e *Engine) lowers() *rootfs.Lowers {
	e.lowersOnce.Do(func() {
		if e.Lowers == nil {
			e.Lowers = rootfs.NewLowers(filepath.Join(e.WorkDir, lowersDir))
		}
	})
	return e.Lowers
}

// Mount prepares a container: root volume (squashfs or directory) with an
// overlay whose upper layer follows the lxc-overlay storage persistence,
// extra volumes read-only, and a directory per storage entry.
func (e *Engine) Mount(c *state.Container) (*Mount, error) {
	return e.mount(c, false)
}

// mount is Mount, or with adopt, takes over the mounts a previous
// supervisor made for c (rootfs.Options.Adopt).
func (e *Engine) mount(c *state.Container, adopt bool) (_ *Mount, err error) {
	work := filepath.Join(e.WorkDir, c.Name)
	if c.Name == lowersDir {
		return nil, fmt.Errorf("mount %s: reserved name", c.Name)
	}
	// The revision whose directories the mount uses: this engine's, or,
	// adopting, the one that made the mount (a container kept by
	// non-reboot updates runs on the volumes and log of the revision
	// that started it).
	rev := e.Rev
	if adopt {
		rev = readOrigin(work, e.Rev)
	}
	if c.RootVolume == "" {
		return nil, fmt.Errorf("mount %s: run.json names no root-volume", c.Name)
	}
	image, err := e.object(c, c.RootVolume)
	if err != nil {
		return nil, err
	}
	overlay := c.Storage[overlayVolume]
	persist, err := rootfs.ParsePersistence(string(overlay.Persistence))
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", c.Name, err)
	}
	opts := rootfs.Options{Image: image, Persistence: persist, WorkBase: work, Lowers: e.lowers(), Adopt: adopt,
		Config: e.configOverlay(c)}
	if persist != rootfs.Boot {
		opts.PersistDir = e.storageDir(rev, c.Name, overlayVolume, overlay.Persistence)
	}
	prefixes := map[string]string{}
	for _, v := range c.Volumes {
		img, err := e.object(c, v)
		if err != nil {
			return nil, err
		}
		file := volumeFile(v)
		target := filepath.Join(work, "volumes", file)
		opts.Volumes = append(opts.Volumes, rootfs.Volume{Image: img, Target: target})
		prefixes["/volumes/"+c.Name+"/"+file] = target
	}
	for name, vol := range c.Storage {
		if name == overlayVolume {
			continue
		}
		dir := e.storageDir(rev, c.Name, name, vol.Persistence)
		if vol.Persistence == state.PersistBoot || vol.Persistence == "" {
			dir = filepath.Join(work, "storage", name)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create storage %s of %s: %w", name, c.Name, err)
		}
		prefixes["/volumes/"+c.Name+"/"+name] = dir
	}
	root, err := rootfs.Mount(opts)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", c.Name, err)
	}
	if n := len(opts.Config); n > 0 && !adopt {
		e.Log.Info("config overlay laid over the root", "container", c.Name, "files", n)
	}
	if !adopt {
		if err := writeOrigin(work, rev); err != nil {
			return nil, errors.Join(fmt.Errorf("mount %s: %w", c.Name, err), root.Unmount())
		}
	}
	e.keepWarm(image)
	for _, v := range opts.Volumes {
		e.keepWarm(v.Image)
	}
	prefixes["/volumes/"+c.Name+"/"+volumeFile(c.RootVolume)] = root.Lower()
	return &Mount{
		e: e, name: c.Name, root: root, work: work, spec: e.specOf(c), rev: rev,
		resolve: driver.PrefixResolver(prefixes),
		console: filepath.Join(e.Layout.Logs(rev), c.Name, "console.log"),
	}, nil
}

// specOf is what the driver runs for c: its lxc config, with its network
// and the control socket's bind mount.
func (e *Engine) specOf(c *state.Container) *spec.Container {
	sp := &spec.Container{}
	if c.LXC != nil {
		copied := *c.LXC // the model is shared and read-only
		sp = &copied
	}
	applyNetwork(sp, c.Network)
	if e.CtrlSocket != "" {
		sp.Mounts = append(append([]spec.Mount(nil), sp.Mounts...), spec.Mount{
			Source: e.CtrlSocket, Target: "pantavisor/pv-ctrl", FSType: "none",
			Options: []string{"bind", "create=file"},
		})
	}
	return sp
}

// Check translates every container of st as Mount and Start would, and
// mounts and creates nothing: what the driver refuses in a container's
// lxc config (an unknown cgroup key, a capability this supervisor cannot
// grant, a seccomp filter past the kernel's size, a kept mount
// namespace) shows before a revision is tried, not at its start, after
// the device has left the revision it ran. Bind sources are not looked
// at: volumes are mounted, and drivers loaded, only at a start. The error
// names each container refused.
func (e *Engine) Check(st *state.State) error {
	var errs []error
	for _, c := range st.Containers {
		if c.LXC == nil {
			continue // its config was not read: nothing to translate
		}
		_, err := e.Driver.Translate(driver.Config{
			Name: c.Name, Spec: e.specOf(c), Rootfs: "/",
			// Every source resolves to a directory that exists.
			ResolveSource: func(string) (string, error) { return "/", nil },
		})
		if err != nil {
			errs = append(errs, err) // "translate container <name>: ..."
		}
	}
	return errors.Join(errs...)
}

// originFile, in a container's work directory (the work tmpfs, which
// outlives a supervisor but not a boot), names the revision whose
// directories its mount uses, for a supervisor that adopts it.
const originFile = "origin"

func writeOrigin(work, rev string) error {
	if err := os.WriteFile(filepath.Join(work, originFile), []byte(rev), 0o600); err != nil {
		return fmt.Errorf("record the mount's revision: %w", err)
	}
	return nil
}

// readOrigin is the revision writeOrigin recorded in work, or def when
// there is none or it is not a revision name (a mount of an older
// supervisor, or a file someone edited).
func readOrigin(work, def string) string {
	b, err := os.ReadFile(filepath.Join(work, originFile))
	if err != nil || storage.CheckRev(string(b)) != nil {
		return def
	}
	return string(b)
}

// object returns the file of a container's object, accepting upstream's
// "handler:file" form. Handlers (dm-verity, crypt) need kernel features an
// appengine host may lack; the plain image is used and the fact logged.
func (e *Engine) object(c *state.Container, name string) (string, error) {
	if h, f, ok := strings.Cut(name, ":"); ok {
		e.Log.Warn("volume handler not supported here, mounting the plain image", "container", c.Name, "handler", h, "file", f)
		name = f
	}
	key := c.Name + "/" + name
	sha, ok := c.Objects[key]
	if !ok {
		return "", fmt.Errorf("mount %s: the revision has no object %s", c.Name, key)
	}
	return state.ObjectPath(e.Layout.Trail(e.Rev), e.Layout.Objects(), key, sha), nil
}

// configOverlay is c's config overlay (upstream's _config/<name>/) with
// each object's file in this engine's revision, as e.object finds it.
func (e *Engine) configOverlay(c *state.Container) []rootfs.ConfigFile {
	var files []rootfs.ConfigFile
	for _, f := range c.ConfigOverlay() {
		cf := rootfs.ConfigFile{Path: f.Path, Data: f.Data}
		if f.Sha != "" {
			cf.Source = state.ObjectPath(e.Layout.Trail(e.Rev), e.Layout.Objects(), f.Key, f.Sha)
		}
		files = append(files, cf)
	}
	return files
}

func (e *Engine) storageDir(rev, container, volume string, p state.Persistence) string {
	if p == state.PersistPermanent {
		return e.Layout.PermanentDisk(container, volume)
	}
	return e.Layout.RevisionDisk(rev, container, volume)
}

func volumeFile(v string) string {
	if _, f, ok := strings.Cut(v, ":"); ok {
		return f
	}
	return v
}

// Mount is a mounted container filesystem; it starts runs of the container.
type Mount struct {
	e       *Engine
	name    string
	root    *rootfs.Root
	work    string
	spec    *spec.Container
	resolve func(string) (string, error)
	console string
	// rev is the revision whose directories the mount uses.
	rev string
}

// Origin is the revision whose volumes and log directory the mount uses:
// its engine's, or, adopted, the one that made it.
func (m *Mount) Origin() string { return m.rev }

// Start creates the container and runs its init. With a lease, eth0 is
// plumbed into the container's network namespace between the creation of
// the init and its exec, so the application never sees a network without
// its address.
func (m *Mount) Start(lease *messages.Lease) (*Run, error) {
	labels, err := leaseLabel(lease)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", m.name, err)
	}
	ct, err := m.e.Driver.Create(driver.Config{
		Name: m.name, Spec: m.spec, Rootfs: m.root.Path(),
		ConsoleLog: m.console, ResolveSource: m.resolve, Labels: labels,
	})
	if err != nil {
		return nil, err // the driver's error names the container
	}
	// A start that fails halfway is undone; an undo that fails too is
	// joined to the cause, so that neither is lost.
	if err := ct.Start(); err != nil {
		return nil, errors.Join(err, ct.Destroy())
	}
	run := &Run{ct: ct, log: m.e.Log}
	if lease != nil {
		att, err := plumb(m.name, ct, lease)
		if err != nil {
			return nil, errors.Join(err, ct.Destroy())
		}
		run.link = &att
	}
	if err := ct.Exec(); err != nil {
		return nil, errors.Join(err, run.Destroy())
	}
	return run, nil
}

// applyNetwork adapts the container's namespaces to run.json network: a
// pool gives it its own network namespace (upstream's template keeps the
// host's); mode host shares the host's; the pool's hostname is the UTS name.
func applyNetwork(sp *spec.Container, n *state.Network) {
	if n == nil {
		return
	}
	keep := make([]string, 0, len(sp.NamespaceKeep)+1)
	for _, ns := range sp.NamespaceKeep {
		if ns != "net" {
			keep = append(keep, ns)
		}
	}
	if n.Mode == state.NetHost {
		keep = append(keep, "net")
	}
	sp.NamespaceKeep = keep
	if n.Hostname != "" {
		sp.Hostname = n.Hostname
	}
}

// plumb gives the container its eth0 from the lease: a veth on the pool's
// bridge or a macvlan on its parent.
func plumb(name string, ct *driver.Container, l *messages.Lease) (link.Attachment, error) {
	ns, err := ct.NetnsPath()
	if err != nil {
		return link.Attachment{}, fmt.Errorf("plumb %s: %w", name, err)
	}
	mac, err := net.ParseMAC(l.MAC)
	if err != nil {
		return link.Attachment{}, fmt.Errorf("plumb %s: bad MAC %q: %w", name, l.MAC, err)
	}
	ep := link.Endpoint{Container: name, NetNS: ns, Addr: l.Addr, Gateway: l.Gateway, MAC: mac}
	if l.Type == string(state.PoolMacvlan) {
		return link.AttachMacvlan(l.Link, ep)
	}
	return link.AttachVeth(l.Link, ep)
}

// Unmount undoes Mount and removes the container's boot-persistence
// storage. Persistent storage stays.
func (m *Mount) Unmount() error {
	err := m.root.Unmount()
	if err == nil {
		// The container's files, nested as deep as it liked.
		err = storage.RemoveTree(filepath.Join(m.work, "storage"))
	}
	return err
}

// Run is one execution of a container's init.
type Run struct {
	ct   *driver.Container
	link *link.Attachment
	log  *slog.Logger
}

// Pid of the init, as seen from pantavisor's pid namespace.
func (r *Run) Pid() int { return r.ct.Pid() }

// StartedAt is when a re-adopted container was started by the previous
// supervisor; zero for one started here.
func (r *Run) StartedAt() time.Time { return r.ct.Created() }

// Done is closed once the init has exited and been reaped.
func (r *Run) Done() <-chan struct{} { return r.ct.Done() }

// Wait blocks until the init exits.
func (r *Run) Wait() messages.Exit {
	ex, err := r.ct.Wait()
	if err != nil && ex.At.IsZero() {
		// How the init ended is unknown: it counts as a failure, and
		// why goes to the log.
		if r.log != nil {
			r.log.Error("wait for container init", "err", err)
		}
		return messages.Exit{Code: -1, At: time.Now()}
	}
	return messages.Exit{Code: ex.Code, Signal: int(ex.Signal), At: ex.At}
}

// Stop terminates the init: SIGTERM, then SIGKILL after timeout.
func (r *Run) Stop(timeout time.Duration) error {
	_, err := r.ct.Stop(timeout)
	if errors.Is(err, driver.ErrNotRunning) {
		return nil
	}
	return err
}

// Destroy removes the container's network link, cgroups and state.
func (r *Run) Destroy() error {
	var errs []error
	if r.link != nil {
		if err := link.Detach(*r.link); err != nil {
			errs = append(errs, err)
		}
		r.link = nil
	}
	if err := r.ct.Destroy(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

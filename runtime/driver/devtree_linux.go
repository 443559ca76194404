package driver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// A devTree is a container's /dev made by the driver before the start,
// instead of by libcontainer's init inside the new mount namespace: the
// /dev tmpfs, its device nodes and links, and the mounts right below it
// (/dev/pts, /dev/shm). The container's configuration binds it at /dev.
//
// Why: the init makes every node, link and mount through safe-path
// lookups (openat2 and /proc checks per step), which is the costliest
// part of its root set-up; here the same result takes plain syscalls on a
// fresh tmpfs nothing else can reach yet (the state root is 0700). What
// the container sees is what libcontainer would make: the same tmpfs,
// nodes (mode and owner included), links and mounts.
//
// The tree exists only while the container starts: its init copies it
// into its own mount namespace, and the driver then detaches it from its
// own, so that the driver's mount table does not grow with every
// container (each start copies and parses that table).
type devTree struct {
	dir   string
	tmpfs *configs.Mount
	// subs are mounted below dir, in order, at their Destination less
	// the /dev/ prefix.
	subs  []*configs.Mount
	nodes []*devices.Device
	links [][2]string // target, name
}

// devSubs are the mounts moved into the tree when they follow /dev in the
// configuration, once each: the runtime's own (see baseMounts), with
// nothing that needs the container's namespaces. A later one (a user's
// mount entry) stays with the init.
var devSubs = map[string]string{"/dev/pts": "devpts", "/dev/shm": "tmpfs"}

// devLinks are the links libcontainer makes in /dev; /dev/core only where
// the kernel has /proc/kcore, as libcontainer checks (once here: the
// kernel does not change).
var devLinks = sync.OnceValue(func() [][2]string {
	links := [][2]string{
		{"/proc/self/fd", "fd"},
		{"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"},
		{"pts/ptmx", "ptmx"},
	}
	if _, err := os.Stat("/proc/kcore"); err == nil {
		links = append(links, [2]string{"/proc/kcore", "core"})
	}
	return links
})

// splitDev moves the making of cfg's /dev into a devTree at dir and binds
// dir at /dev in its place. It returns nil, leaving cfg alone, when cfg
// has no /dev tmpfs to move, or a user namespace (whose root could not
// use nodes made by ours): libcontainer then makes /dev itself.
func splitDev(cfg *configs.Config, dir string) *devTree {
	if cfg.Namespaces.Contains(configs.NEWUSER) {
		return nil
	}
	at := -1
	for i, m := range cfg.Mounts {
		if m.Destination == "/dev" {
			if m.Device == "tmpfs" {
				at = i
			}
			break
		}
	}
	if at < 0 {
		return nil
	}
	t := &devTree{dir: dir, tmpfs: cfg.Mounts[at]}
	end := at + 1
	seen := map[string]bool{}
	for ; end < len(cfg.Mounts); end++ {
		m := cfg.Mounts[end]
		if fs, ok := devSubs[m.Destination]; !ok || fs != m.Device || seen[m.Destination] {
			break
		}
		seen[m.Destination] = true
		t.subs = append(t.subs, m)
	}
	for _, d := range cfg.Devices {
		// libcontainer makes /dev/ptmx a link into /dev/pts instead.
		if d.Path != "" && d.Path != "/dev/ptmx" && strings.HasPrefix(d.Path, "/dev/") {
			t.nodes = append(t.nodes, d)
		}
	}
	t.links = devLinks()
	bind := &configs.Mount{Source: dir, Destination: "/dev", Device: "bind", Flags: unix.MS_BIND | unix.MS_REC}
	cfg.Mounts = append(append(cfg.Mounts[:at:at], bind), cfg.Mounts[end:]...)
	return t
}

// build makes the tree. On failure it removes what it made.
func (t *devTree) build() (err error) {
	err = os.Mkdir(t.dir, 0o755)
	if errors.Is(err, os.ErrExist) {
		// Left by a start that could not detach it: clear it first.
		if rerr := t.remove(); rerr != nil {
			return fmt.Errorf("stale /dev tree: %w", rerr)
		}
		err = os.Mkdir(t.dir, 0o755)
	}
	if err != nil {
		return fmt.Errorf("make /dev tree: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.remove())
		}
	}()
	if err := mountAt(t.tmpfs, t.dir); err != nil {
		return err
	}
	// Private, so that detaching the tree later cannot propagate into
	// the container's copy of it.
	if err := unix.Mount("", t.dir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make /dev tree private: %w", &os.PathError{Op: "mount", Path: t.dir, Err: err})
	}
	for _, d := range t.nodes {
		if err := t.mknod(d); err != nil {
			return err
		}
	}
	for _, l := range t.links {
		if err := os.Symlink(l[0], filepath.Join(t.dir, l[1])); err != nil {
			return fmt.Errorf("make /dev tree: %w", err)
		}
	}
	for _, m := range t.subs {
		target := filepath.Join(t.dir, strings.TrimPrefix(m.Destination, "/dev/"))
		if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("make /dev tree: %w", err)
		}
		if err := mountAt(m, target); err != nil {
			return err
		}
	}
	return nil
}

func mountAt(m *configs.Mount, target string) error {
	if err := unix.Mount(m.Source, target, m.Device, uintptr(m.Flags), m.Data); err != nil {
		return fmt.Errorf("mount %s for %s: %w", m.Device, m.Destination, &os.PathError{Op: "mount", Path: target, Err: err})
	}
	return nil
}

// mknod makes one device node with exactly its mode and owner (mknod
// alone is subject to the umask).
func (t *devTree) mknod(d *devices.Device) error {
	var kind uint32
	switch d.Type {
	case devices.CharDevice:
		kind = unix.S_IFCHR
	case devices.BlockDevice:
		kind = unix.S_IFBLK
	case devices.FifoDevice:
		kind = unix.S_IFIFO
	default:
		return fmt.Errorf("device %s: type %q is not c, b or p", d.Path, d.Type)
	}
	p := filepath.Join(t.dir, strings.TrimPrefix(d.Path, "/dev/"))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	dev, err := d.Mkdev()
	if err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	perm := uint32(d.FileMode.Perm())
	if err := unix.Mknod(p, kind|perm, int(dev)); err != nil {
		return fmt.Errorf("device %s: %w", d.Path, &os.PathError{Op: "mknod", Path: p, Err: err})
	}
	if err := unix.Chmod(p, perm); err != nil {
		return fmt.Errorf("device %s: %w", d.Path, &os.PathError{Op: "chmod", Path: p, Err: err})
	}
	if err := unix.Lchown(p, int(d.Uid), int(d.Gid)); err != nil {
		return fmt.Errorf("device %s: %w", d.Path, &os.PathError{Op: "chown", Path: p, Err: err})
	}
	return nil
}

// remove detaches the tree (with what is mounted below it) and removes
// its directory. Nothing there is not an error.
func (t *devTree) remove() error {
	if err := unix.Unmount(t.dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("detach /dev tree: %w", &os.PathError{Op: "unmount", Path: t.dir, Err: err})
	}
	if err := os.Remove(t.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove /dev tree: %w", err)
	}
	return nil
}

// null opens the tree's /dev/null for the init's standard streams, as
// libcontainer's init would reopen them on the container's own node; nil
// when the tree has none.
func (t *devTree) null() *os.File {
	f, err := os.OpenFile(filepath.Join(t.dir, "null"), os.O_RDWR, 0)
	if err != nil {
		return nil
	}
	return f
}

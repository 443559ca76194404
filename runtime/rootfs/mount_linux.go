package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Root is a mounted root filesystem. Its methods are safe for concurrent
// use.
type Root struct {
	path  string
	lower string
	kind  Kind
	// adopt: Options.Adopt; mounts are checked and recorded, not made.
	adopt bool

	mu   sync.Mutex
	undo []undoStep // in the order they were done; undone in reverse
}

type undoStep struct {
	what string
	fn   func() error
}

// Path is the directory to use as the container's root.
func (r *Root) Path() string { return r.path }

// Lower is the read-only lower layer: the squashfs mountpoint, or the image
// directory itself.
func (r *Root) Lower() string { return r.lower }

// Kind is the detected type of the root image.
func (r *Root) Kind() Kind { return r.kind }

// Mount attaches and mounts the root image, its overlay and the extra
// volumes described by o. On failure it undoes what it did and returns an
// error naming the step that failed.
//
// The mounts are made in the caller's mount namespace; a container created
// on Path later gets copies of them in its own namespace.
func Mount(o Options) (_ *Root, err error) {
	p, err := ParsePersistence(string(o.Persistence))
	if err != nil {
		return nil, err
	}
	if o.Image == "" || o.WorkBase == "" {
		return nil, fmt.Errorf("mount rootfs: image and work base are required: %w", ErrBadOptions)
	}
	if p != Boot && o.PersistDir == "" {
		return nil, fmt.Errorf("mount rootfs: persistence %s needs a persist dir: %w", p, ErrBadOptions)
	}
	kind, err := Detect(o.Image)
	if err != nil {
		return nil, err
	}
	r := &Root{kind: kind, adopt: o.Adopt}
	defer func() {
		if err != nil {
			if uerr := r.Unmount(); uerr != nil {
				err = errors.Join(err, fmt.Errorf("unwind: %w", uerr))
			}
		}
	}()

	if err := r.mkdir(o.WorkBase); err != nil {
		return nil, err
	}
	switch kind {
	case Squashfs:
		if o.Lowers != nil {
			lw, err := r.acquire(o.Lowers, o.Image)
			if err != nil {
				return nil, err
			}
			r.lower = lw.Path()
			break
		}
		r.lower = filepath.Join(o.WorkBase, "lower")
		if err := r.mountSquashfs(o.Image, r.lower); err != nil {
			return nil, err
		}
	case Dir:
		r.lower = o.Image
	}

	var layerDir string
	switch {
	case p == Boot && o.Adopt:
		// The tmpfs left the mount table once the overlay held it.
		layerDir = filepath.Join(o.WorkBase, "overlay")
	case p == Boot:
		layerDir = filepath.Join(o.WorkBase, "overlay")
		if err := r.mkdir(layerDir); err != nil {
			return nil, err
		}
		data := "mode=0755"
		if o.TmpfsSize != "" {
			data += ",size=" + o.TmpfsSize
		}
		if err := r.mount("tmpfs", layerDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
			return nil, fmt.Errorf("mount overlay tmpfs for %s: %w", o.Image, err)
		}
	default:
		layerDir = o.PersistDir
	}
	upper, work := filepath.Join(layerDir, "upper"), filepath.Join(layerDir, "work")
	for _, d := range []string{upper, work} {
		// Not tracked for removal: in a persist dir they are the data.
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create overlay dir: %w", err)
		}
	}
	dirs, lowers := []string{r.lower, upper, work}, r.lower
	if len(o.Config) > 0 {
		config := filepath.Join(o.WorkBase, configDir)
		// Leftmost is topmost: the config's files shadow the image's.
		dirs, lowers = append(dirs, config), config+":"+r.lower
	}
	for _, d := range dirs {
		if strings.ContainsAny(d, ",:\\") {
			return nil, fmt.Errorf("mount overlay for %s: path %q has one of ,:\\: %w", o.Image, d, ErrBadOptions)
		}
	}
	if len(o.Config) > 0 {
		if err := r.layConfig(filepath.Join(o.WorkBase, configDir), o.Config); err != nil {
			return nil, err
		}
	}
	r.path = filepath.Join(o.WorkBase, "rootfs")
	if err := r.mkdir(r.path); err != nil {
		return nil, err
	}
	data := "lowerdir=" + lowers + ",upperdir=" + upper + ",workdir=" + work
	if err := r.mount("overlay", r.path, "overlay", 0, data); err != nil {
		return nil, fmt.Errorf("mount overlay for %s: %w", o.Image, err)
	}
	if p == Boot && !o.Adopt {
		// The overlay holds a private clone of the upper tmpfs, so the
		// tmpfs leaves the mount table now: every container started
		// after this one copies that table into its namespace, and its
		// init (the Go runtime, libcontainer) reads it line by line. The
		// writes stay reachable through the overlay only, and go with it.
		if err := unix.Unmount(layerDir, unix.MNT_DETACH); err != nil {
			return nil, fmt.Errorf("detach overlay tmpfs for %s: %w", o.Image, err)
		}
	}

	for _, v := range o.Volumes {
		if err := r.mountVolume(v, o.Lowers); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// layConfig writes the config overlay at dir and records its removal.
// What a power cut or a crash left at dir is replaced: the overlay is the
// revision's, as upstream copies it again at every start.
//
// Adopting, nothing is written: the overlay mount holds what the previous
// supervisor laid. A supervisor from before config overlays laid none;
// its container is adopted as it runs (adoption restarts nothing), and
// gets its overlay at its next start.
func (r *Root) layConfig(dir string, files []ConfigFile) error {
	if r.adopt {
		if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
			return nil
		}
	} else {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("config overlay: remove the old one: %w", err)
		}
		if err := writeConfig(dir, files); err != nil {
			return errors.Join(err, os.RemoveAll(dir))
		}
	}
	r.push("remove config overlay "+dir, func() error { return os.RemoveAll(dir) })
	return nil
}

// mountVolume mounts one extra image read-only at its target; a squashfs
// image comes from lowers when it is set.
func (r *Root) mountVolume(v Volume, lowers *Lowers) error {
	if !filepath.IsAbs(v.Target) {
		return fmt.Errorf("mount volume %s: target %q is not absolute: %w", v.Image, v.Target, ErrBadOptions)
	}
	kind, err := Detect(v.Image)
	if err != nil {
		return fmt.Errorf("mount volume: %w", err)
	}
	if err := r.mkdir(v.Target); err != nil {
		return err
	}
	source := v.Image
	switch {
	case kind == Squashfs && lowers == nil:
		return r.mountSquashfs(v.Image, v.Target)
	case kind == Squashfs:
		lw, err := r.acquire(lowers, v.Image)
		if err != nil {
			return fmt.Errorf("mount volume: %w", err)
		}
		source = lw.Path()
		fallthrough
	default:
		if err := r.mount(source, v.Target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind volume %s: %w", v.Image, err)
		}
		if r.adopt {
			return nil
		}
		// A bind mount ignores MS_RDONLY until it is remounted.
		if err := remountReadOnly(v.Target); err != nil {
			return fmt.Errorf("remount volume %s read-only: %w", v.Image, err)
		}
		return nil
	}
}

// keptFlags are the statfs flags a read-only remount of a bind carries
// over, with their mount flags: such a remount sets the mount's flags
// anew, so what it does not name is cleared (in a user namespace, where
// they are locked, it fails instead).
var keptFlags = []struct{ st, ms uintptr }{
	{unix.ST_NOSUID, unix.MS_NOSUID},
	{unix.ST_NODEV, unix.MS_NODEV},
	{unix.ST_NOEXEC, unix.MS_NOEXEC},
	{unix.ST_NOATIME, unix.MS_NOATIME},
	{unix.ST_NODIRATIME, unix.MS_NODIRATIME},
	{unix.ST_RELATIME, unix.MS_RELATIME},
}

// remountReadOnly makes the bind mount at target read-only, keeping the
// flags it took from its source (a squashfs lower is nosuid and nodev).
func remountReadOnly(target string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", target, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	for _, f := range keptFlags {
		if uintptr(st.Flags)&f.st != 0 {
			flags |= f.ms
		}
	}
	return unix.Mount("", target, "", flags, "")
}

// mountSquashfs attaches image to a loop device and mounts it read-only at
// target. The loop device auto-clears when the filesystem is unmounted
// (from every mount namespace that holds it).
func (r *Root) mountSquashfs(image, target string) error {
	if err := r.mkdir(target); err != nil {
		return err
	}
	if r.adopt {
		return r.mount("", target, "squashfs", 0, "")
	}
	dev, f, err := attachLoop(image)
	if err != nil {
		return fmt.Errorf("mount squashfs %s: %w", image, err)
	}
	// Closing the last handle of an auto-clearing device that is not mounted
	// detaches it, so this also cleans up when the mount fails.
	defer f.Close()
	if err := r.mount(dev, target, "squashfs", unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return fmt.Errorf("mount squashfs %s on %s: %w", image, dev, err)
	}
	return nil
}

// acquire takes a reference to the shared mount of image and records its
// release, which therefore comes after the unmount of whatever is mounted
// on top of it later (overlay, volume bind).
func (r *Root) acquire(lowers *Lowers, image string) (*Lower, error) {
	acquire := lowers.Acquire
	if r.adopt {
		acquire = lowers.acquireRecovered
	}
	lw, err := acquire(image)
	if err != nil {
		return nil, err
	}
	r.push("release shared lower "+lw.Path(), lw.Release)
	return lw, nil
}

// mount calls mount(2) and records the matching unmount. Adopting, it
// checks that target is a mountpoint instead.
func (r *Root) mount(source, target, fstype string, flags uintptr, data string) error {
	if r.adopt {
		if !IsMountpoint(target) {
			return fmt.Errorf("adopt %s: %w", target, ErrNotMounted)
		}
		r.push("unmount "+target, func() error { return unmount(target) })
		return nil
	}
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return &os.PathError{Op: "mount", Path: target, Err: err}
	}
	r.push("unmount "+target, func() error { return unmount(target) })
	return nil
}

// mkdir creates dir (and its parents) and, if dir itself did not exist,
// records its removal.
func (r *Root) mkdir(dir string) error {
	if _, err := os.Lstat(dir); err == nil && !r.adopt {
		return nil
	} else if err == nil {
		// Made by the previous supervisor: removed as if made here.
		r.push("remove "+dir, func() error { return removeEmpty(dir) })
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create mountpoint: %w", err)
	}
	r.push("remove "+dir, func() error { return removeEmpty(dir) })
	return nil
}

// removeEmpty removes dir when it is empty; a non-empty dir is left
// alone, it is not ours to clear.
func removeEmpty(dir string) error {
	err := os.Remove(dir)
	if err == nil || errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// IsMountpoint says whether path is the root of a mount (statx's
// STATX_ATTR_MOUNT_ROOT).
func IsMountpoint(path string) bool {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, 0, &st); err != nil {
		return false
	}
	return st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
}

func (r *Root) push(what string, fn func() error) {
	r.mu.Lock()
	r.undo = append(r.undo, undoStep{what, fn})
	r.mu.Unlock()
}

// Unmount undoes Mount in reverse order: it unmounts the volumes, the
// overlay (with it goes the tmpfs of a Boot upper layer, detached since
// the overlay was mounted, and its contents) and the squashfs mounts (their loop devices then auto-clear), and
// removes the mountpoints Mount created. A mount that is still busy is
// detached lazily (MNT_DETACH): it disappears from the tree at once and
// the kernel frees it, and its loop device, when the last user lets go.
//
// Unmount is idempotent: steps that succeeded are not repeated, steps that
// failed are kept and retried by the next call. Filesystems that are
// already unmounted count as done.
func (r *Root) Unmount() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	var failed []undoStep
	for i := len(r.undo) - 1; i >= 0; i-- {
		s := r.undo[i]
		if err := s.fn(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.what, err))
			failed = append(failed, s)
		}
	}
	// Keep failed steps in their original order for the next attempt.
	for i, j := 0, len(failed)-1; i < j; i, j = i+1, j-1 {
		failed[i], failed[j] = failed[j], failed[i]
	}
	r.undo = failed
	if len(errs) > 0 {
		return fmt.Errorf("unmount rootfs: %w", errors.Join(errs...))
	}
	return nil
}

// unmount unmounts target, treating "not mounted" as success and falling
// back to a lazy detach when it is busy.
func unmount(target string) error {
	err := unix.Unmount(target, 0)
	switch {
	case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EBUSY):
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return err
		}
		return nil
	}
	return err
}

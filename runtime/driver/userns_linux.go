package driver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/runtime/rootfs"
)

// prepareMappedRoot readies the root filesystem of a container with a user
// namespace of its own (lxc.idmap) for its mapped root, which makes the
// container's mounts from inside that namespace:
//
//   - The root directory goes to the host ids root is mapped to, as LXC
//     does for an unprivileged container (chown_mapped_root), so that root
//     can write to / as it could in a container of its own.
//   - Every mountpoint that is missing is made here, by the host's root,
//     owned by the mapped root. The image's directories belong to host ids
//     the namespace does not map (nobody inside): the mapped root could not
//     make /pantavisor/pv-ctrl in an image that has /pantavisor.
//
// On an overlay both changes are copied up into the container's own upper
// layer; the image stays as it is. A read-only root cannot change: it is
// left as it is, and a mountpoint it lacks fails the start naming it.
func prepareMappedRoot(cfg *configs.Config) error {
	if !cfg.Namespaces.Contains(configs.NEWUSER) {
		return nil
	}
	uid, uerr := cfg.HostRootUID()
	gid, gerr := cfg.HostRootGID()
	if uerr != nil || gerr != nil {
		return nil // nobody inside is root: there is nobody to give it to
	}
	if err := reachable(cfg.Rootfs, uid, gid); err != nil {
		return err
	}
	if err := os.Lchown(cfg.Rootfs, uid, gid); err != nil {
		if errors.Is(err, unix.EROFS) {
			return nil
		}
		return fmt.Errorf("lxc.idmap: give the root directory to the mapped root: %w", err)
	}
	root, err := unix.Open(cfg.Rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("lxc.idmap: open the root filesystem: %w", err)
	}
	defer unix.Close(root)
	for _, m := range cfg.Mounts {
		file := false
		if m.IsBind() {
			st, err := os.Stat(m.Source)
			if err != nil {
				continue // libcontainer reports a missing source, or skips an optional one
			}
			file = !st.IsDir()
		}
		if err := makeMountpoint(root, m.Destination, file, uid, gid); err != nil && !errors.Is(err, unix.EROFS) {
			return fmt.Errorf("lxc.idmap: mountpoint %s: %w", m.Destination, err)
		}
	}
	return nil
}

// reachable tells, with an error a person can act on, when the mapped
// root could not walk down to the root filesystem: libcontainer's own
// error would be a bare "permission denied" from inside the namespace.
// The directories above a container's root must be searchable by others,
// as LXC requires of an unprivileged container's path.
func reachable(rootfs string, uid, gid int) error {
	for d := filepath.Dir(rootfs); ; d = filepath.Dir(d) {
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil {
			return fmt.Errorf("lxc.idmap: %w", &os.PathError{Op: "stat", Path: d, Err: err})
		}
		search := st.Mode&0o001 != 0 ||
			int(st.Uid) == uid && st.Mode&0o100 != 0 ||
			int(st.Gid) == gid && st.Mode&0o010 != 0
		if !search {
			return fmt.Errorf("lxc.idmap: the mapped root (uid %d) cannot reach the root filesystem: %s is mode %04o, owned by %d:%d; "+
				"the directories above a container with a user namespace must be searchable by others", uid, d, st.Mode&0o7777, st.Uid, st.Gid)
		}
		if d == "/" {
			return nil
		}
	}
}

// makeMountpoint makes dest (an absolute path inside the container) below
// root when it is missing, a directory or an empty file, with the missing
// directories above it, all owned by uid:gid. What exists is resolved as
// the container would see it: symlinks, dangling ones included (an image's
// /var/run -> /run), lead inside root, never out of it; what is made is
// made below a directory so resolved, never through a symlink.
func makeMountpoint(root int, dest string, file bool, uid, gid int) error {
	path := filepath.Clean("/" + dest)
	for range 40 { // as the kernel's limit of symlinks in one lookup
		parts := slices.DeleteFunc(strings.Split(path, "/"), func(p string) bool { return p == "" || p == "." })
		if len(parts) == 0 {
			return nil
		}
		dir, i, err := resolvePrefix(root, parts)
		if err != nil {
			return err
		}
		if i == len(parts) {
			unix.Close(dir)
			return nil // it exists
		}
		// parts[i] is missing, or a symlink to something missing.
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(dir, parts[i], buf)
		if err == nil {
			unix.Close(dir)
			target := string(buf[:n])
			if !filepath.IsAbs(target) {
				target = strings.Join(parts[:i], "/") + "/" + target
			}
			path = "/" + target + "/" + strings.Join(parts[i+1:], "/")
			continue
		}
		err = makeBelow(dir, parts[i:], path, file, uid, gid)
		return err
	}
	return &os.PathError{Op: "resolve", Path: dest, Err: unix.ELOOP}
}

// resolvePrefix opens the longest prefix of parts that exists inside root,
// resolved as the container would, and says how many parts it holds.
func resolvePrefix(root int, parts []string) (int, int, error) {
	dir, err := unix.Dup(root)
	if err != nil {
		return -1, 0, err
	}
	for i := range parts {
		fd, err := rootfs.OpenIn(root, strings.Join(parts[:i+1], "/"))
		if errors.Is(err, unix.ENOENT) {
			return dir, i, nil
		}
		unix.Close(dir)
		if err != nil {
			return -1, 0, &os.PathError{Op: "resolve", Path: "/" + strings.Join(parts[:i+1], "/"), Err: err}
		}
		dir = fd
	}
	return dir, len(parts), nil
}

// makeBelow makes names one below the other under dir (which it closes),
// the last one a file when file is set, each owned by uid:gid.
func makeBelow(dir int, names []string, path string, file bool, uid, gid int) error {
	defer func() { unix.Close(dir) }()
	for i, name := range names {
		if name == ".." {
			return &os.PathError{Op: "mkdir", Path: path, Err: unix.EINVAL}
		}
		if i == len(names)-1 && file {
			fd, err := unix.Openat(dir, name, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			if err != nil {
				return &os.PathError{Op: "create", Path: path, Err: err}
			}
			err = unix.Fchown(fd, uid, gid)
			unix.Close(fd)
			if err != nil {
				return &os.PathError{Op: "chown", Path: path, Err: err}
			}
			return nil
		}
		if err := unix.Mkdirat(dir, name, 0o755); err != nil {
			return &os.PathError{Op: "mkdir", Path: path, Err: err}
		}
		fd, err := unix.Openat(dir, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: path, Err: err}
		}
		unix.Close(dir)
		dir = fd
		if err := unix.Fchownat(dir, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
			return &os.PathError{Op: "chown", Path: path, Err: err}
		}
	}
	return nil
}

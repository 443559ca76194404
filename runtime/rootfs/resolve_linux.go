package rootfs

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ResolveIn resolves rel inside root as if root were "/": ".." stops at
// root and symlinks, absolute or relative, are followed within it (openat2
// RESOLVE_IN_ROOT), so a volume's own content cannot point a bind mount
// at the host. It returns the real path of what rel names, which exists.
//
// The answer is a path, not a held file, so a container that can write
// the volume could swap a component for a symlink before the path is
// mounted; images (squashfs) are read-only, which is what this guards.
func ResolveIn(root, rel string) (string, error) {
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("resolve %q in %s: open root: %w", rel, root, err)
	}
	defer unix.Close(rootFd)
	rel = strings.TrimLeft(rel, "/")
	if rel == "" {
		rel = "."
	}
	fd, err := OpenIn(rootFd, rel)
	if err != nil {
		return "", fmt.Errorf("resolve %q in %s: %w", rel, root, err)
	}
	defer unix.Close(fd)
	realRoot, err := fdPath(rootFd)
	if err != nil {
		return "", fmt.Errorf("resolve %q in %s: %w", rel, root, err)
	}
	real, err := fdPath(fd)
	if err != nil {
		return "", fmt.Errorf("resolve %q in %s: %w", rel, root, err)
	}
	// openat2 promised this; a path outside would be a kernel bug or a
	// root renamed under us, and either way not ours to bind.
	if real != realRoot && !strings.HasPrefix(real, strings.TrimSuffix(realRoot, "/")+"/") {
		return "", fmt.Errorf("resolve %q in %s: resolved to %s, outside %s", rel, root, real, realRoot)
	}
	return real, nil
}

// OpenIn opens rel (O_PATH) as a process chrooted at the directory rootFd
// would find it: absolute symlinks and ".." stop at rootFd, magic links
// (/proc/self/root and the like) are refused.
func OpenIn(rootFd int, rel string) (int, error) {
	return unix.Openat2(rootFd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// fdPath is the path the kernel has for an open file.
func fdPath(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), buf)
	if err != nil {
		return "", fmt.Errorf("read path of fd %d: %w", fd, err)
	}
	return string(buf[:n]), nil
}

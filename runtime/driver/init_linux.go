package driver

import (
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/runtime/driver/initshim"
)

// Init is a read-only handle on the container init binary, held open by
// the supervisor for as long as containers may start. Every container init
// libcontainer starts opens it from its parent's descriptor table and,
// before anything else runs, becomes that binary (see
// initshim/handoff_linux.c). Without an Init each init is a full copy of
// the program that starts it.
type Init struct {
	file *os.File
	// Path is the binary the handle was made from.
	Path string
	// Sealing says how the handle is protected against writes
	// (CVE-2019-5736): a private read-only overlay of its directory, or
	// a sealed in-memory copy where overlayfs refuses.
	Sealing Sealing
	// OverlayErr is why the overlay was refused when Sealing is
	// SealingMemfd: the copy costs the binary's size in memory.
	OverlayErr error
}

// InitPath is where the container init is installed: beside the binary exe.
func InitPath(exe string) string { return filepath.Join(filepath.Dir(exe), initshim.InitName) }

// ErrInitMismatch is returned by OpenInit for a container init that was
// not built with the same libcontainer as this program: the two halves of
// libcontainer (the parent here, the init there) speak a private protocol.
var ErrInitMismatch = errors.New("container init is from another build")

// OpenInit checks the container init binary at path (named pvinit) against
// this program's build and opens the handle every container init will look
// for; tmpDir is an empty directory for the overlay's second layer,
// created when missing. It changes nothing else on error, and containers
// then start as before.
//
// The handle stays open until Close, at descriptor 100 (OpenInit fails if
// that is taken). It is close-on-exec: only container inits reach it,
// through /proc, and they close it as they execute it.
//
// Call it early, before the process has opened many files, and once.
func OpenInit(path, tmpDir string) (*Init, error) { return openInit(path, tmpDir, true) }

// openInit is OpenInit; tryOverlay false goes straight to the memfd copy
// (for tests: overlayfs takes every binary this machine has).
func openInit(path, tmpDir string, tryOverlay bool) (*Init, error) {
	if filepath.Base(path) != initshim.InitName {
		return nil, fmt.Errorf("open container init %s: must be named %s", path, initshim.InitName)
	}
	if err := sameBuild(path); err != nil {
		return nil, fmt.Errorf("open container init %s: %w", path, err)
	}
	var f *os.File
	var err error
	sealing := SealingOverlay
	if tryOverlay {
		if err = os.MkdirAll(tmpDir, 0o700); err == nil {
			f, err = overlayHandle(path, tmpDir)
		}
	}
	overlayErr := err
	if f == nil {
		if f, err = memfdCopy(path); err != nil {
			return nil, fmt.Errorf("open container init %s: %w", path, errors.Join(overlayErr, err))
		}
		sealing = SealingMemfd
	}
	defer f.Close()
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, initshim.InitFd)
	if err != nil {
		return nil, fmt.Errorf("open container init %s: dup: %w", path, err)
	}
	if fd != initshim.InitFd {
		unix.Close(fd)
		return nil, fmt.Errorf("open container init %s: descriptor %d is taken", path, initshim.InitFd)
	}
	return &Init{file: os.NewFile(uintptr(fd), path), Path: path, Sealing: sealing, OverlayErr: overlayErr}, nil
}

// Close releases the handle: containers started afterwards are copies of
// this program again.
func (i *Init) Close() error { return i.file.Close() }

// sameBuild checks that the binary at path links the same libcontainer as
// this program and, where both carry version control stamps, comes from
// the same revision of this module. What go build makes carries the
// versions of every dependency; test binaries carry none.
func sameBuild(path string) error {
	theirs, err := buildinfo.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read build info: %w", err)
	}
	ours, ok := debug.ReadBuildInfo()
	if !ok {
		return errors.New("this program has no build info")
	}
	// A test binary lists no dependencies: then all that can be checked
	// is that the init links libcontainer at all.
	const runc = "github.com/opencontainers/runc"
	a, b := moduleVersion(ours, runc), moduleVersion(theirs, runc)
	if b == "" || a != "" && a != b {
		return fmt.Errorf("%w: %s %q here, %q there", ErrInitMismatch, runc, a, b)
	}
	for _, key := range []string{"vcs.revision", "vcs.modified"} {
		a, b := setting(ours, key), setting(theirs, key)
		if a != "" && b != "" && a != b {
			return fmt.Errorf("%w: %s %s here, %s there", ErrInitMismatch, key, a, b)
		}
	}
	return nil
}

// moduleVersion is the version of module m in bi, its replacement's when
// it is replaced, "" when bi does not use it.
func moduleVersion(bi *debug.BuildInfo, m string) string {
	for _, d := range bi.Deps {
		if d.Path != m {
			continue
		}
		if d.Replace != nil {
			return d.Replace.Path + "@" + d.Replace.Version
		}
		return d.Version
	}
	return ""
}

func setting(bi *debug.BuildInfo, key string) string {
	for _, s := range bi.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// overlayHandle opens path through a private overlayfs whose only layers
// are read-only: the binary's directory, and tmpDir (overlayfs needs two
// lower layers to mount without an upper one). The mount is attached
// nowhere; the handle keeps it alive. Nothing can write to the binary
// through it, and it costs no memory: pages come from the binary's own
// page cache.
func overlayHandle(path, tmpDir string) (*os.File, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("resolve: %w", err)
	}
	dir, name := filepath.Split(real)
	ctx, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("fsopen overlay", err)
	}
	defer unix.Close(ctx)
	// The binary's layer is the upper of the two, so that nothing named
	// like it in tmpDir can hide it.
	lower := escapeLowerDir(filepath.Clean(dir)) + ":" + escapeLowerDir(tmpDir)
	if err := unix.FsconfigSetString(ctx, "lowerdir", lower); err != nil {
		return nil, fmt.Errorf("overlay lowerdir=%s: %w", lower, err)
	}
	// Only to keep the kernel log quiet where the layers are on different
	// filesystems; the result is the same either way.
	_ = unix.FsconfigSetString(ctx, "xino", "off")
	if err := unix.FsconfigCreate(ctx); err != nil {
		return nil, os.NewSyscallError("fsconfig create overlay", err)
	}
	mnt, err := unix.Fsmount(ctx, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOSUID)
	if err != nil {
		return nil, os.NewSyscallError("fsmount overlay", err)
	}
	defer unix.Close(mnt)
	fd, err := unix.Openat(mnt, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s in overlay: %w", name, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// escapeLowerDir escapes what overlayfs's lowerdir option treats as
// separators.
func escapeLowerDir(p string) string {
	return strings.ReplaceAll(strings.ReplaceAll(p, `\`, `\\`), `:`, `\:`)
}

// memfdCopy copies path into a memfd named pvinit and seals it against
// every change. The copy stays in memory for as long as the handle is
// open: overlayHandle is preferred.
func memfdCopy(path string) (_ *os.File, err error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	fd, err := unix.MemfdCreate(initshim.InitName, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+initshim.InitName)
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if _, err := io.Copy(f, src); err != nil {
		return nil, fmt.Errorf("copy to memfd: %w", err)
	}
	if err := f.Chmod(0o511); err != nil {
		return nil, err
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, initshim.InitSeals); err != nil {
		return nil, os.NewSyscallError("seal memfd", err)
	}
	return f, nil
}

// Package nofollow opens files where a container may have put something
// else: a directory bind-mounted into a container (its log directory, a
// volume) can hold, under any name and at any moment, a symlink to a file
// of the host, a FIFO or a device node. Pantavisor, root, must reach the
// file that is there, and only when it is a plain file: never the file a
// link names (the storage's state JSON, say, which a truncation through
// the link would empty), never a FIFO (an open for reading or writing
// waits for a peer, for ever when none comes), never a device node (whose
// open alone may act on the device).
package nofollow

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrNotRegular: what is at the name is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// Dir opens the directory rel below the directory root (a descriptor)
// with flags (unix.O_PATH or unix.O_RDONLY; O_DIRECTORY and O_CLOEXEC are
// added), refusing any symlink on the way and any ".." that would climb
// above root (RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS): a directory swapped
// for a link since it was seen is an error, not a way out.
func Dir(root int, rel string, flags int) (int, error) {
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(root, rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_DIRECTORY | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, &os.PathError{Op: "openat2", Path: rel, Err: err}
	}
	return fd, nil
}

// Regular opens name in the directory dirfd (unix.AT_FDCWD: name is a
// path, whose directories are followed as usual) with flags, as
// os.OpenFile would, when what is at name is a regular file. A symlink at
// name is not followed and anything but a regular file is ErrNotRegular,
// without an open that could wait or act: the type is read on an O_PATH
// descriptor first, and that same inode is then opened through
// /proc/self/fd, so nothing swapped in between is opened instead.
//
// With O_CREAT, a missing file is made with perm (less the umask), and an
// existing one is opened as above; with O_CREAT|O_EXCL, an existing one,
// a symlink included, is an error.
func Regular(dirfd int, name string, flags int, perm uint32) (*os.File, error) {
	if flags&unix.O_CREAT != 0 {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		if err == nil {
			return os.NewFile(uintptr(fd), name), nil
		}
		if !errors.Is(err, unix.EEXIST) || flags&unix.O_EXCL != 0 {
			return nil, &os.PathError{Op: "open", Path: name, Err: err}
		}
		flags &^= unix.O_CREAT
	}
	p, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(p)
	var st unix.Stat_t
	if err := unix.Fstat(p, &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &os.PathError{Op: "open", Path: name, Err: fmt.Errorf("%w (mode %#o)", ErrNotRegular, st.Mode&unix.S_IFMT)}
	}
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(p), flags|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		// No /proc where this process is seen: the name opened again,
		// not followed and without waiting, and kept only when it is
		// still the inode checked.
		fd, err = reopenAt(dirfd, name, flags, &st)
	}
	if err != nil {
		return nil, &os.PathError{Op: "reopen", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// reopenAt opens name in dirfd with flags when it is still the inode st
// describes.
func reopenAt(dirfd int, name string, flags int, st *unix.Stat_t) (int, error) {
	fd, err := unix.Openat(dirfd, name, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var now unix.Stat_t
	if err := unix.Fstat(fd, &now); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if now.Dev != st.Dev || now.Ino != st.Ino {
		unix.Close(fd)
		return -1, fmt.Errorf("replaced while being opened: %w", ErrNotRegular)
	}
	if flags&unix.O_NONBLOCK == 0 {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags&^(unix.O_ACCMODE|unix.O_CREAT|unix.O_EXCL|unix.O_TRUNC|unix.O_NOCTTY)); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

// Append opens the log file at path for appending, creating it with perm
// (less the umask) when missing. A regular file there is appended to;
// anything else (a symlink, a FIFO, a device node a container put at the
// log's name) is removed, the link itself and never what it names, and
// the log made anew. path's directories are followed as usual: they are
// the caller's.
func Append(path string, perm uint32) (*os.File, error) {
	flags := os.O_WRONLY | os.O_APPEND | os.O_CREATE
	f, err := Regular(unix.AT_FDCWD, path, flags, perm)
	if errors.Is(err, ErrNotRegular) {
		if err = unix.Unlink(path); err == nil {
			f, err = Regular(unix.AT_FDCWD, path, flags|os.O_EXCL, perm)
		}
	}
	return f, err
}

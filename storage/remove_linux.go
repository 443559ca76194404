package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// removeDepth is how many directories deep RemoveTree descends with their
// descriptors open; a directory below that is moved up first.
const removeDepth = 32

// RemoveTree removes path and everything below it, as os.RemoveAll does
// (a symlink is removed, never followed; a missing path is no error), with
// at most removeDepth descriptors open however deep the tree. What is
// below a revision's disks and logs is a container's, which may nest
// directories thousands deep at no cost: os.RemoveAll holds a descriptor
// per level, so it failed with EMFILE there, for good, and every other
// open of the supervisor failed while it held them. A directory deeper
// than removeDepth is renamed to path's own top level (renameat, so a
// chain of any depth becomes shallow pieces) and removed from there.
func RemoveTree(path string) error {
	parent, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: filepath.Dir(path), Err: err}
	}
	defer unix.Close(parent)
	base := filepath.Base(path)
	if err := unix.Unlinkat(parent, base, 0); err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	} else if !errors.Is(err, unix.EISDIR) {
		return &os.PathError{Op: "unlinkat", Path: path, Err: err}
	}
	top, err := openDir(parent, base)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer top.Close()
	r := &remover{top: int(top.Fd())}
	for {
		r.moved = false
		if _, err := top.Seek(0, io.SeekStart); err != nil {
			return &os.PathError{Op: "seek", Path: path, Err: err}
		}
		if err := r.clear(top, 1); err != nil {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		if !r.moved {
			break
		}
	}
	if err := unix.Unlinkat(parent, base, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "unlinkat", Path: path, Err: err}
	}
	return nil
}

type remover struct {
	top   int  // the tree's top directory, where deep ones are moved
	moved bool // a directory was moved up in this pass
	n     int  // for the names of the directories moved up
}

// openDir opens the directory name in dir for reading, never through a
// symlink.
func openDir(dir int, name string) (*os.File, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// clear removes what the directory d (at depth, the top being 1) holds,
// reading its names 1024 at a time (a directory of millions of entries
// is never read whole into memory).
func (r *remover) clear(d *os.File, depth int) error {
	const batch = 1024
	for {
		names, err := d.Readdirnames(batch)
		if err != nil && err != io.EOF {
			return err
		}
		failed := 0
		var first error
		for _, name := range names {
			if err := r.remove(int(d.Fd()), name, depth); err != nil {
				failed++
				first = firstErr(first, fmt.Errorf("%s: %w", name, err))
			}
		}
		if len(names) < batch {
			return first
		}
		// Removals reshuffle a directory: read it again from the
		// start, unless every name of the batch stayed (then the
		// next batch, or this would loop for ever).
		if failed < len(names) {
			if _, err := d.Seek(0, io.SeekStart); err != nil {
				return err
			}
		}
	}
}

// remove removes name in dir: a file at once, a directory after its
// contents, or, at removeDepth, moved up to the top for a later pass.
func (r *remover) remove(dir int, name string, depth int) error {
	err := unix.Unlinkat(dir, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) {
		return err
	}
	if depth >= removeDepth {
		for {
			r.n++
			err := unix.Renameat2(dir, name, r.top, ".pv-remove-"+strconv.Itoa(r.n), unix.RENAME_NOREPLACE)
			if errors.Is(err, unix.EEXIST) {
				continue
			}
			if err == nil {
				r.moved = true
			}
			return err
		}
	}
	sub, err := openDir(dir, name)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	err = r.clear(sub, depth+1)
	sub.Close()
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dir, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// firstErr keeps the first error.
func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// Package atomicfile replaces a file whole or not at all: the new content
// goes to a temporary file beside it, which is synced and renamed over it,
// and the directory is synced so that the rename outlives a power cut. A
// crash at any instant leaves the old file or the whole new one, never a
// torn mix. storage's crash-safe writes and pvcontrol's -f FILE are built
// on it; it imports nothing of the project, so the small CLI stays small.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// File is the temporary file that becomes Path at Commit. Its name is
// ".<base>.tmp<random>" in Path's directory: what storage's start-up sweep
// (storage.Layout.Recover) takes for a write a crash interrupted, in the
// directories it sweeps (a trail's .pv and .pvr, boot/, the metadata
// caches) and by rpiab's on its boot partitions (RPiAB.RemoveLeftovers,
// through Leftovers); one a crash leaves elsewhere (beside pvcontrol's
// -f FILE) stays until someone removes it.
type File struct {
	*os.File
	Path string
}

// Create opens the temporary file for path, with mode perm.
func Create(path string, perm os.FileMode) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("create temp for %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("chmod %s: %w", f.Name(), err)
	}
	return &File{File: f, Path: path}, nil
}

// The system calls Commit makes, replaced by the tests to see their order.
var (
	fsync  = (*os.File).Sync
	rename = os.Rename
)

// Commit makes the file Path, in the order crash safety needs: its data
// synced, the rename, the file synced again, the directory synced. A
// failure before the rename removes the temporary file and leaves Path
// as it was; one after it leaves Path new (a power cut may still undo
// the rename).
//
// The sync after the rename is FAT's (rpiab's boot partitions, a U-Boot
// environment file on one): there a rename writes the file's new
// directory entry only when the file's inode is written back (vfat_rename
// marks it dirty, without dirsync), which the directory's sync does not
// do; the old entry stays on the medium for up to the writeback delay,
// pointing at the clusters the rename freed, and a power cut then brings
// the old file back. The file's own sync writes the entry. On a
// journaling filesystem it joins the journal commit the directory's sync
// makes anyway.
func (f *File) Commit() error {
	name := f.Name()
	err := fsync(f.File)
	if err != nil {
		err = fmt.Errorf("sync %s: %w", name, err)
	}
	if err == nil {
		if rerr := rename(name, f.Path); rerr != nil {
			err = fmt.Errorf("rename %s: %w", f.Path, rerr)
		}
	}
	if err != nil {
		f.Close()
		os.Remove(name)
		return err
	}
	err = fsync(f.File)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", f.Path, cerr)
	} else if err != nil {
		err = fmt.Errorf("sync %s after its rename: %w", f.Path, err)
	}
	if derr := SyncDir(filepath.Dir(f.Path)); err == nil {
		err = derr
	}
	return err
}

// Leftovers returns the temporary files a crash left of writes to path:
// the files of its directory named as Create names them.
func Leftovers(path string) ([]string, error) {
	// The base is quoted for Glob: a name may hold its metacharacters.
	pattern := filepath.Join(filepath.Dir(path), "."+globQuote(filepath.Base(path))+".tmp*")
	names, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("temporary files of %s: %w", path, err)
	}
	return names, nil
}

// globQuote escapes filepath.Match's metacharacters in s.
func globQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Discard removes the temporary file: Path is left as it was.
func (f *File) Discard() {
	f.Close()
	os.Remove(f.Name())
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := fsync(d); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// WriteFile replaces path with data through a File.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Discard()
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return f.Commit()
}

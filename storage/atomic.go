// Package storage owns a device's storage directory: trails, objects, logs
// and the crash-safe writes everything else relies on.
package storage

import (
	"os"

	"github.com/pantavisor/pv/internal/atomicfile"
)

// WriteFileAtomic replaces path with data so that a crash at any instant
// leaves either the old content or the new, never a torn file: write a
// temporary file in the same directory, fsync it, rename it over path, then
// fsync the directory so the rename itself is durable. A full storage is
// ErrNoSpace, a read-only one ErrReadOnly, for every caller alike.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return unwritable(atomicfile.WriteFile(path, data, perm))
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error { return atomicfile.SyncDir(dir) }

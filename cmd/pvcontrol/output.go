package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// outputFile is -f FILE: a command's output goes to a temporary file
// beside FILE, which becomes FILE only when the command succeeded. FILE
// is never left half written: it is the old one or the whole new one.
type outputFile struct {
	f    *os.File
	path string
}

// createOutput creates the temporary file for path, in path's directory
// so that the rename is atomic. It keeps the mode of an existing path,
// else it is 0644.
func createOutput(path string) (*outputFile, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create output: %w", err)
	}
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		mode = fi.Mode().Perm()
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("create output: %w", err)
	}
	return &outputFile{f: f, path: path}, nil
}

// commit makes the temporary file path, for crash safety in this order:
// the data synced, the rename, the directory synced (so the rename is
// not lost on a power cut). On failure the temporary file is removed.
func (o *outputFile) commit() error {
	err := o.f.Sync()
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(o.f.Name(), o.path)
	}
	if err != nil {
		os.Remove(o.f.Name())
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	if d, err := os.Open(filepath.Dir(o.path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("sync directory of %s: %w", o.path, err)
		}
	}
	return nil
}

// discard removes the temporary file: path is left as it was.
func (o *outputFile) discard() {
	o.f.Close()
	os.Remove(o.f.Name())
}

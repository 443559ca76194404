package main

import (
	"fmt"
	"os"

	"github.com/pantavisor/pv/internal/atomicfile"
)

// createOutput is -f FILE: a command's output goes to a temporary file
// beside FILE, which becomes FILE only when the command succeeded
// (atomicfile's Commit; Discard otherwise). FILE is never left half
// written: it is the old one or the whole new one. It keeps the mode of
// an existing FILE, else it is 0644.
func createOutput(path string) (*atomicfile.File, error) {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		mode = fi.Mode().Perm()
	}
	f, err := atomicfile.Create(path, mode)
	if err != nil {
		return nil, fmt.Errorf("create output: %w", err)
	}
	return f, nil
}

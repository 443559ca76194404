//go:build !linux

package storage

import "os"

// RemoveTree is os.RemoveAll where the descriptor-bounded removal is not
// built.
func RemoveTree(path string) error { return os.RemoveAll(path) }

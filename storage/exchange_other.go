//go:build !linux

package storage

import "syscall"

// exchange is not available: ReplaceTrail falls back to two renames.
func exchange(a, b string) error { return syscall.ENOSYS }

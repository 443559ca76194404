package storage

import "golang.org/x/sys/unix"

// exchange swaps the paths a and b atomically (renameat2 RENAME_EXCHANGE):
// fs.ErrNotExist when either is missing, EINVAL where the filesystem
// cannot.
func exchange(a, b string) error {
	return unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
}

package bootloader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/storage"
)

// EXT4_IOC_CHECKPOINT, _IOW('f', 43, __u32) (Linux 5.13), writes the
// journal's committed metadata to its place; with the dry-run flag it
// only says whether it could.
const (
	ext4IocCheckpoint = 0x4004662b
	checkpointDryRun  = 0x4
)

// writeForBootloader replaces the file at path with data crash-safely, as
// storage.WriteFileAtomic does, and makes the replacement visible to a
// bootloader, making path's directory when needed.
//
// GRUB and U-Boot read ext4 without replaying its journal. After the
// rename and the fsyncs, the new directory entry and inode are committed
// to the journal, and reach their place in the filesystem only at a
// checkpoint, seconds or minutes later. A power cut before that boots on
// the old file, or on blocks that were freed with it and may already hold
// other data. So the journal is checkpointed at once
// (EXT4_IOC_CHECKPOINT). Where there is no such journal, syncfs does what
// it can (f2fs writes a checkpoint of its own). Upstream writes its env
// files in place instead; a rename also keeps a torn write from Linux's
// own reader.
//
// A supervisor that cannot checkpoint (no CAP_SYS_ADMIN) is refused
// before anything is written. With noReader (appengine: only pantavisor
// reads the file, through the kernel) the file is only replaced.
func writeForBootloader(path string, data []byte, perm os.FileMode, noReader bool) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if noReader {
		return storage.WriteFileAtomic(path, data, perm)
	}
	journal, err := checkpoint(dir, checkpointDryRun)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := storage.WriteFileAtomic(path, data, perm); err != nil {
		return err
	}
	if !journal {
		err = syncfs(dir)
	} else {
		_, err = checkpoint(dir, 0)
	}
	if err != nil {
		return fmt.Errorf("%s is written, but a bootloader may not see it yet: %w", path, err)
	}
	return nil
}

// checkpoint runs EXT4_IOC_CHECKPOINT with flags on the filesystem of
// dir; journal is false when that filesystem has no ext4 journal.
func checkpoint(dir string, flags int) (journal bool, err error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	err = unix.IoctlSetPointerInt(int(f.Fd()), ext4IocCheckpoint, flags)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOTTY), errors.Is(err, unix.ENODEV), errors.Is(err, unix.EOPNOTSUPP):
		// Not ext4 (ENOTTY), ext4 without a journal (ENODEV), or one
		// whose journal cannot be flushed so (EOPNOTSUPP).
		return false, nil
	case errors.Is(err, unix.EPERM):
		return true, fmt.Errorf("checkpoint the ext4 journal, which GRUB and U-Boot do not read: %w (it needs CAP_SYS_ADMIN)", err)
	}
	return true, fmt.Errorf("checkpoint the ext4 journal, which GRUB and U-Boot do not read: %w", err)
}

func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	return nil
}

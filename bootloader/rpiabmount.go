package bootloader

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// errUnmounted is what reading a boot partition that is not mounted where
// RPiAB expects it returns: what its mount point holds then is the run
// directory's, not the partition's, and says nothing about it.
var errUnmounted = errors.New("not mounted")

// MountBootPartition mounts the boot partition on the block device dev at
// at as fstype (vfat on a Pi), with nothing on it executable: the firmware
// reads it, not the running system.
func MountBootPartition(dev, at, fstype string) error {
	if err := os.MkdirAll(at, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, at, fstype, unix.MS_NOATIME|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", dev, fstype, at, err)
	}
	return nil
}

// mounted says whether boot partition part is mounted where Partitions
// says: the filesystem there is on its device node (Devices). A partition
// with no device node is the directory model of the tests: its directory
// is the whole of it.
func (r RPiAB) mounted(part int) (bool, error) {
	dev := r.Devices[part]
	if dev == "" {
		return true, nil
	}
	var at, node unix.Stat_t
	if err := unix.Stat(r.Partitions[part], &at); err != nil {
		if os.IsNotExist(err) {
			return false, nil
		}
		return false, fmt.Errorf("partition %d: %w", part, err)
	}
	if err := unix.Stat(dev, &node); err != nil {
		return false, fmt.Errorf("partition %d: device %s: %w", part, dev, err)
	}
	return node.Mode&unix.S_IFMT == unix.S_IFBLK && at.Dev == node.Rdev, nil
}

// needMounted returns an error wrapping errUnmounted when partition part
// is not mounted.
func (r RPiAB) needMounted(part int) error {
	ok, err := r.mounted(part)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("partition %d (%s) at %s: %w", part, r.Devices[part], r.Partitions[part], errUnmounted)
	}
	return nil
}

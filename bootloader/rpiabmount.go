package bootloader

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
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
// is the whole of it. A node that does not exist (it never appeared) has
// nothing mounted: its error was taken for a partition without
// pv_rev.txt, and a tryboot of it for a run of the committed revision.
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
		if os.IsNotExist(err) {
			return false, nil
		}
		return false, fmt.Errorf("partition %d: device %s: %w", part, dev, err)
	}
	return node.Mode&unix.S_IFMT == unix.S_IFBLK && at.Dev == node.Rdev, nil
}

// needMounted returns an error wrapping errUnmounted when partition part
// is not mounted, and its mount's error at boot (MountErrors) when it has
// one: said "at boot", as an image write since may have unmounted it.
func (r RPiAB) needMounted(part int) error {
	ok, err := r.mounted(part)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	if merr := r.MountErrors[part]; merr != nil {
		return fmt.Errorf("partition %d (%s) at %s: %w (at boot: %w)", part, r.Devices[part], r.Partitions[part], errUnmounted, merr)
	}
	return fmt.Errorf("partition %d (%s) at %s: %w", part, r.Devices[part], r.Partitions[part], errUnmounted)
}

// BootImage is a revision's boot image for rpiab: the BSP's rpiab object,
// a FAT image of the boot partition (kernel, device trees, config.txt),
// written whole onto the try partition.
type BootImage struct {
	// Path is the image's file.
	Path string
	// Gzip says Path is gzip-compressed, as upstream decides it: the
	// BSP's file name ends in .gz.
	Gzip bool
	// Object names the image's content (its sha256): revisions with the
	// same Object boot the same files.
	Object string
}

// ErrNoBootImage is wrapped by the error of RPiAB.Image for a revision
// that has no boot image: upstream requires bsp/run.json's rpiab key with
// PV_BOOTLOADER_TYPE=rpiab.
var ErrNoBootImage = errors.New(`no rpiab boot image (bsp/run.json's "rpiab" key)`)

// open returns the image's content, decompressed.
func (img BootImage) open() (io.ReadCloser, error) {
	f, err := os.Open(img.Path)
	if err != nil {
		return nil, fmt.Errorf("boot image: %w", err)
	}
	if !img.Gzip {
		return f, nil
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("boot image %s: %w", img.Path, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{z, f}, nil
}

// size returns the length of the image's content, or an error when it
// is more than limit bytes. A compressed one is read through, which checks
// it whole (the gzip trailer's CRC) before a byte of the partition is
// touched, but never past limit: a few megabytes of gzip can decompress
// to terabytes, and the install runs in root's Receive, where the
// watchdog waits on it.
func (img BootImage) size(limit int64) (int64, error) {
	if !img.Gzip {
		fi, err := os.Stat(img.Path)
		if err != nil {
			return 0, fmt.Errorf("boot image: %w", err)
		}
		return fi.Size(), nil
	}
	rc, err := img.open()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, io.LimitReader(rc, limit+1))
	if err != nil {
		return 0, fmt.Errorf("boot image %s: %w", img.Path, err)
	}
	if n > limit {
		return 0, fmt.Errorf("boot image %s decompresses to more than %d bytes: %w", img.Path, limit, errImageTooLarge)
	}
	return n, nil
}

// errImageTooLarge: a compressed boot image was measured only up to the
// partition's size.
var errImageTooLarge = errors.New("larger than the partition")

// maxUnplacedImage bounds the measure of an image for a partition with no
// device node (the tests' directory model): larger than any boot
// partition.
const maxUnplacedImage = 4 << 30

// deviceSize returns the size of the block device dev.
func deviceSize(dev string) (int64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

// installImage writes img onto boot partition part. It is measured first:
// an image the partition cannot hold, or one that does not read whole,
// is refused with nothing changed. Then the partition is unmounted, and
// only then the tryboot flag disarmed (a reboot must not try a partition
// being written), the image written, fsynced and mounted again. An
// unmount refused (busy) is a refusal with nothing changed: an armed
// revision stacked on the partition (its image, pv_rev.txt and pv_try in
// place) stays armed. Disarmed first, the refusal left its pv_try with no
// flag: the next reboot, a normal one, rolled back the revision running.
// A disarm that fails mounts the partition again, still intact. An error
// after the disarm leaves the partition unmounted: it lists no revision
// (mounted), a normal boot does not need it, and the next install writes
// it again. A partition with no device node (the tests' directory model)
// has its image measured only.
func (r RPiAB) installImage(part int, img BootImage) error {
	dev, at := r.Devices[part], r.Partitions[part]
	if dev == "" {
		_, err := img.size(maxUnplacedImage)
		return err
	}
	if r.FSType == "" {
		return fmt.Errorf("partition %d: no filesystem type to mount it with", part)
	}
	capacity, err := deviceSize(dev)
	if err != nil {
		return fmt.Errorf("partition %d: %w", part, err)
	}
	size, err := img.size(capacity)
	if errors.Is(err, errImageTooLarge) {
		return fmt.Errorf("%w, partition %d (%s) holds %d", err, part, dev, capacity)
	}
	if err != nil {
		return err
	}
	if size > capacity {
		return fmt.Errorf("boot image %s is %d bytes, partition %d (%s) holds %d", img.Path, size, part, dev, capacity)
	}
	mounted, err := r.mounted(part)
	if err != nil {
		return err
	}
	if mounted {
		if err := unix.Unmount(at, 0); err != nil {
			return fmt.Errorf("partition %d: unmount %s: %w", part, at, err)
		}
	}
	if err := r.disarm(); err != nil {
		if mounted {
			if merr := MountBootPartition(dev, at, r.FSType); merr != nil {
				err = errors.Join(err, fmt.Errorf("partition %d, left unmounted: %w", part, merr))
			}
		}
		return err
	}
	if err := writeImage(dev, img, size); err != nil {
		return fmt.Errorf("partition %d, left unmounted: %w", part, err)
	}
	if err := MountBootPartition(dev, at, r.FSType); err != nil {
		return fmt.Errorf("partition %d: the boot image %s written does not mount: %w", part, img.Path, err)
	}
	return nil
}

// writeImage copies img's size bytes onto the block device dev and
// fsyncs it. O_EXCL: the kernel refuses it while anything has dev
// mounted.
func writeImage(dev string, img BootImage, size int64) error {
	src, err := img.open()
	if err != nil {
		return err
	}
	defer src.Close()
	f, err := os.OpenFile(dev, os.O_WRONLY|unix.O_EXCL, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dev, err)
	}
	n, err := io.Copy(f, src)
	if err == nil && n != size {
		err = fmt.Errorf("%d bytes of the boot image, %d measured before", n, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write boot image %s onto %s: %w", img.Path, dev, err)
	}
	return nil
}

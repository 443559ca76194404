package main

import (
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/bootloader"
)

// rpiabSite is where a device's rpiab backend finds its partitions:
// pantavisor mounts them itself (upstream copies files in and out of the
// FAT images with mtools instead, which a device then must carry).
type rpiabSite struct {
	// devs are the device nodes of partitions 1 (bootsel), 2 and 3
	// (bootloader.RPiABDevices).
	devs map[int]string
	// dir is <run>/rpiab: partition N is mounted at dir/pN, and the
	// tryboot flag is dir/tryboot. The run directory is on the /run
	// tmpfs, so the flag goes with a power cut, as the firmware's does.
	dir string
	// fstype is vfat on a device; the tests pass what their images are.
	fstype string
	// wait is how long a partition's node may take to appear
	// (PV_STORAGE_WAIT: the same disk as the storage, as a rule).
	wait time.Duration
	// tryboot is the firmware's tryboot property;
	// bootloader.DefaultTrybootProperty when empty (the tests pass
	// their own).
	tryboot string
	// boot is true at a boot, false in a supervisor PID 1 started
	// again: a boot drops a tryboot flag left in dir, as the firmware
	// consumes its own before it boots; a supervisor started again keeps
	// what the previous one armed.
	boot bool
}

// rpiabDir is where rpiabSite.dir is under the run directory.
func rpiabDir(run string) string { return filepath.Join(run, "rpiab") }

// place mounts the partitions not mounted yet (a supervisor started again
// finds them mounted by the previous one) and returns the backend that
// uses them. What a boot needs is partition 1 (autoboot.txt) and the
// partition its [all] names, which a normal boot loaded: either missing
// is an error naming it. The [tryboot] partition may not mount (an image
// write cut by a power cut): the firmware tries it only once an install
// has rewritten it, so it is logged and left unmounted, and the backend
// reads it as listing no revision until Install writes it. In a tryboot
// the firmware loaded it: the try fails (bootloader.ErrTryUnreadable),
// and the backend says why (MountErrors), when asked which revision runs.
func (s rpiabSite) place(log *slog.Logger) (bootloader.RPiAB, error) {
	r := bootloader.RPiAB{Partitions: map[int]string{}, Devices: map[int]string{}, MountErrors: map[int]error{},
		FSType: s.fstype, TrybootFlag: filepath.Join(s.dir, "tryboot"), TrybootProperty: s.tryboot}
	mounted, err := mountPoints()
	if err != nil {
		return r, fmt.Errorf("rpiab: %w", err)
	}
	for _, n := range slices.Sorted(maps.Keys(s.devs)) {
		at := filepath.Join(s.dir, "p"+strconv.Itoa(n))
		if n == bootloader.RPiABBootsel {
			r.Bootsel = at
		} else {
			r.Partitions[n] = at
		}
		r.Devices[n] = s.devs[n]
		if mounted[at] != "" {
			continue
		}
		node, err := s.mount(s.devs[n], at, mounted)
		if node != "" {
			r.Devices[n] = node
		}
		if err != nil {
			r.MountErrors[n] = err
			continue
		}
		log.Info("rpiab partition mounted", "partition", n, "device", node, "on", at)
	}
	if err := r.MountErrors[bootloader.RPiABBootsel]; err != nil {
		return r, fmt.Errorf("rpiab: partition %d: %w", bootloader.RPiABBootsel, err)
	}
	boot, try, err := r.BootPartitions()
	if err != nil {
		return r, fmt.Errorf("rpiab: %w", err)
	}
	if err := r.MountErrors[boot]; err != nil {
		return r, fmt.Errorf("rpiab: partition %d, which autoboot.txt boots: %w", boot, err)
	}
	if err := r.MountErrors[try]; err != nil {
		if tryboot, _ := r.Tryboot(); tryboot {
			// What follows (a rollback reboot, or safe mode with no
			// try set or nothing to roll back to) is the updater's
			// decision, which it logs: this says only what was seen.
			log.Error("rpiab: the try partition, which this tryboot loaded, does not mount: nothing can run from it", "partition", try, "err", err)
		} else {
			log.Warn("rpiab: the try partition does not mount: it lists no revision until the next install writes its boot image", "partition", try, "err", err)
		}
	}
	if s.boot {
		if err := os.Remove(r.TrybootFlag); err == nil {
			log.Warn("rpiab: a tryboot flag was left from before this boot: dropped, as the firmware drops its own", "file", r.TrybootFlag)
		} else if !os.IsNotExist(err) {
			return r, fmt.Errorf("rpiab: drop the tryboot flag left: %w", err)
		}
	}
	// Nothing has written to the partitions yet.
	removed, err := r.RemoveLeftovers()
	for _, f := range removed {
		log.Info("rpiab: removed a temporary file a power cut left", "file", f)
	}
	if err != nil {
		log.Warn("rpiab: temporary files a power cut left not all removed", "err", err)
	}
	return r, nil
}

// mount waits for dev's node and mounts it at at; node is the node found,
// empty when none appeared.
func (s rpiabSite) mount(dev, at string, mounted map[string]string) (node string, err error) {
	node, _, err = waitStorage(dev, s.wait)
	if err != nil {
		return "", err
	}
	// The partitions are mounted beneath a mount of the directory
	// itself, which shareRPiAB makes shared (the copies containers keep
	// of them must go at an unmount of ours), made with the first.
	if mounted[s.dir] == "" {
		if err := os.MkdirAll(s.dir, 0o755); err != nil {
			return node, err
		}
		if err := unix.Mount(s.dir, s.dir, "", unix.MS_BIND, ""); err != nil {
			return node, fmt.Errorf("mount %s on itself: %w", s.dir, err)
		}
		mounted[s.dir] = "bind"
	}
	return node, bootloader.MountBootPartition(node, at, s.fstype)
}

// shareRPiAB makes the directory of the boot partitions' mounts (a
// mount of its own, place) shared again, after isolate made every mount
// private, and before any container's mount namespace copies it. A
// container's mount namespace is a copy of pantavisor's, and with / an
// initramfs (NoPivotRoot) it keeps its copies of the partitions' mounts
// under its root: private copies held a partition's filesystem after
// Install unmounted ours, and the image write was refused (EBUSY) for as
// long as the container ran. libcontainer makes a container's mounts
// slaves of the shared ones, and an unmount beneath a shared mount reaches
// its slaves: the copies go with ours.
func shareRPiAB(run string, log *slog.Logger) {
	dir := rpiabDir(run)
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		log.Warn("rpiab: an install may be refused while containers run", "err", fmt.Errorf("share %s: %w", dir, err))
	}
}

// unmountRPiAB unmounts the partitions place mounted under run, before
// PID 1 reboots or powers off: FAT has no journal, and Linux marks a
// mounted one dirty until it is unmounted.
func unmountRPiAB(run string, log *slog.Logger) {
	mounted, err := mountPoints()
	if err != nil {
		log.Warn("rpiab partitions: cannot list mounts", "err", err)
		return
	}
	for _, n := range []int{bootloader.RPiABBootsel, 2, 3} {
		at := filepath.Join(rpiabDir(run), "p"+strconv.Itoa(n))
		if mounted[at] != "" {
			unmountOrReadOnly(at, log)
		}
	}
	if dir := rpiabDir(run); mounted[dir] != "" {
		_ = unix.Unmount(dir, unix.MNT_DETACH) // the bind place made: nothing written there
	}
}

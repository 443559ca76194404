package bootloader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/pantavisor/pv/internal/atomicfile"
	"github.com/pantavisor/pv/storage"
)

// RPiABSize is the size of upstream's rpiab.txt.
const RPiABSize = 512

// DefaultTrybootProperty is where the Raspberry Pi firmware tells the
// running system whether this boot is a tryboot.
const DefaultTrybootProperty = "/proc/device-tree/chosen/bootloader/tryboot"

// DefaultPartitionProperty is where the Raspberry Pi firmware tells the
// running system the number of the partition it booted.
const DefaultPartitionProperty = "/proc/device-tree/chosen/bootloader/partition"

// ErrCommitUnfinished is returned by RPiAB.Running when a commit stopped
// between storing pv_rev and switching autoboot.txt: the device booted the
// old partition, whose pv_rev.txt does not list the committed revision, and
// the other one does. Commit(env.Committed()) finishes it; then reboot.
var ErrCommitUnfinished = errors.New("commit stopped before autoboot.txt was switched")

// ErrTryUnreadable is returned by RPiAB.Running for a tryboot whose boot
// partition Linux cannot read (not mounted: a kernel without vfat, a
// damaged partition; or, with pv_try set, its pv_rev.txt missing or
// unreadable, which Install writes before it arms the flag). The firmware loaded the try's files; a revision
// that cannot reach its boot partition could install no update after
// it, so the try has failed. The firmware's tryboot is one-shot: a
// reboot is a normal boot of the committed revision.
var ErrTryUnreadable = errors.New("the tried boot partition cannot be read")

// RPiAB is upstream's Raspberry Pi A/B backend, built on the firmware's
// tryboot. What the firmware (the Pi 4/5 EEPROM bootloader) does:
//
//   - It reads autoboot.txt (at most 512 bytes) from the first FAT
//     partition. With tryboot_a_b=1 in [all], a normal boot loads
//     boot_partition of [all], and a tryboot that of [tryboot], each with
//     its own config.txt.
//   - The tryboot flag is one-shot: set by the mailbox property
//     SET_REBOOT_FLAGS (what `reboot "0 tryboot"` does), cleared by the
//     firmware before it boots. Any reboot after a tryboot, a crash or the
//     watchdog included, is a normal boot: that is the rollback.
//   - It tells the booted system in the device tree: chosen/bootloader/
//     tryboot is a big-endian 32-bit 1 in a tryboot.
//
// pv_rev.txt on each boot partition is upstream's own, not the firmware's:
// the revisions that partition's kernel and files were installed for.
// rpiab.txt in <storage>/boot holds pv_rev and pv_try, upstream's
// NUL-separated format in 512 bytes.
//
// What is modelled: the partitions are directories where they are mounted
// (on a device pantavisor mounts them, cmd/pantavisor; upstream writes the
// FAT images with mtools, unmounted); the tryboot flag is the file
// TrybootFlag, present when armed. No mailbox call is made here: on a
// Pi, whoever reboots turns a present flag into `reboot "0 tryboot"`
// (TakeTryboot consumes it; PID 1 reboots so), and the tryboot property
// is the real one. A revision's boot files are its boot image (Image),
// which Install writes onto the try partition's device node (Devices),
// unmounted for the write, as upstream writes rpiboot.img.
//
// Every file is replaced crash-safely (temp, fsync, rename, fsync dir);
// on FAT, which has no journal, the rename is as safe as FAT makes it.
type RPiAB struct {
	// BootDir is <storage>/boot, where rpiab.txt lives.
	BootDir string
	// Bootsel is where partition 1, with autoboot.txt, is mounted.
	Bootsel string
	// Partitions maps the partition numbers of autoboot.txt to where
	// those boot partitions are mounted.
	Partitions map[int]string
	// Devices maps the same numbers to the partitions' block device
	// nodes (RPiABDevices). A partition whose mount point is not on its
	// node lists no revision (its mount point's files are not its own):
	// one that did not mount at boot, or whose image write was cut
	// short. Empty in the tests' directory model, where a partition's
	// directory is the whole of it.
	Devices map[int]string
	// MountErrors holds, for a partition of Devices that did not mount
	// at boot, its mount's error (cmd/pantavisor): a tryboot of it,
	// which cannot tell which revision it runs, says why.
	MountErrors map[int]error
	// FSType is the filesystem of the boot partitions, mounted again
	// after an image is written (vfat on a Pi).
	FSType string
	// Image returns revision rev's boot image, an error wrapping
	// ErrNoBootImage when it has none. Install writes it onto the try
	// partition; whoever knows the storage supplies it (updater.BootImage).
	Image func(rev string) (BootImage, error)
	// TrybootFlag is the file standing for the firmware's tryboot flag.
	TrybootFlag string
	// TrybootProperty is the device-tree property saying whether this boot
	// is a tryboot; DefaultTrybootProperty when empty.
	TrybootProperty string
	// PartitionProperty is the device-tree property giving the partition
	// this boot loaded; DefaultPartitionProperty when empty. Without it
	// the partition is worked out from autoboot.txt, which a commit
	// during this boot has swapped since.
	PartitionProperty string
	// saveEnv stores rpiab.txt (saveNulEnv when nil): the tests put a
	// medium that fails in its place.
	saveEnv func(path string, env Env, size int) error
	// writeFlag arms the tryboot flag (storage.WriteFileAtomic when nil):
	// the tests put a medium that fails in its place.
	writeFlag func(path string, data []byte, perm os.FileMode) error
}

var _ Backend = RPiAB{}

func (r RPiAB) check() error {
	switch {
	case r.BootDir == "":
		return fmt.Errorf("rpiab: no boot directory")
	case r.Bootsel == "":
		return fmt.Errorf("rpiab: no bootsel partition (autoboot.txt)")
	case len(r.Partitions) < 2:
		return fmt.Errorf("rpiab: %d boot partitions, want 2", len(r.Partitions))
	case r.TrybootFlag == "":
		return fmt.Errorf("rpiab: no tryboot flag file")
	}
	return nil
}

// checkDevice is check for a device's backend, which New returns: each
// boot partition has its device node, for Install to write its image
// onto, and the images have their source.
func (r RPiAB) checkDevice() error {
	if err := r.check(); err != nil {
		return err
	}
	for _, p := range slices.Sorted(maps.Keys(r.Partitions)) {
		if r.Devices[p] == "" {
			return fmt.Errorf("rpiab: no device node for boot partition %d", p)
		}
	}
	switch {
	case r.FSType == "":
		return fmt.Errorf("rpiab: no filesystem type for the boot partitions")
	case r.Image == nil:
		return fmt.Errorf("rpiab: no source of boot images")
	}
	return nil
}

func (r RPiAB) envPath() string      { return filepath.Join(r.BootDir, "rpiab.txt") }
func (r RPiAB) autobootPath() string { return filepath.Join(r.Bootsel, "autoboot.txt") }

// Load reads rpiab.txt; a missing file is an empty environment.
func (r RPiAB) Load() (Env, error) { return loadNulEnv(r.envPath(), RPiABSize) }

// Save replaces rpiab.txt with env, crash-safely; an env that does not fit
// 512 bytes is refused and nothing is written. It arms or disarms nothing:
// Install, Commit and Fail do.
func (r RPiAB) Save(env Env) error {
	save := func(path string, env Env, size int) error {
		// The firmware reads autoboot.txt on FAT, not this file:
		// nothing to checkpoint for it.
		return saveNulEnv(path, env, size, true)
	}
	if r.saveEnv != nil {
		save = r.saveEnv
	}
	return save(r.envPath(), env, RPiABSize)
}

// Install arms rev to be tried at the next boot, in upstream's order:
// rev's boot image written onto the [tryboot] partition (installImage),
// the list of revisions in that partition's pv_rev.txt, then pv_try=rev
// in rpiab.txt, then the tryboot flag, last: only from then on does a
// reboot load the try partition. A crash before it leaves a normal boot
// with pv_try set, which Running reports as the committed revision (a
// rollback). A save of pv_try or an arming of the flag that returns an
// error puts the variables back as they were (undoInstall). A revision
// with no boot image is refused, with nothing changed: the try would boot
// the kernel of whatever the partition held.
//
// Updates stacked without a reboot (the flag already armed, the
// partition listing the revisions installed since): when rev's image is
// the same object as that of every revision listed, the partition holds
// it already, and rev joins the list (stackRevs) with no write. Else the
// image is written and the list starts afresh with rev: the revisions it
// held no longer match the partition's files. reboot is true when
// revisions were dropped from the list (it was full, or the image is
// another): rev can then only be started by a reboot.
func (r RPiAB) Install(rev string) (reboot bool, err error) {
	if err := checkRev(rev); err != nil {
		return false, fmt.Errorf("install revision: %w", err)
	}
	if err := r.check(); err != nil {
		return false, fmt.Errorf("install revision %s: %w", rev, err)
	}
	if r.Image == nil {
		return false, fmt.Errorf("install revision %s: rpiab: no source of boot images", rev)
	}
	img, err := r.Image(rev)
	if err != nil {
		return false, fmt.Errorf("install revision %s: %w", rev, err)
	}
	before, err := r.Load()
	if err != nil {
		return false, fmt.Errorf("install revision %s: %w", rev, err)
	}
	ab, err := r.autoboot()
	if err != nil {
		return false, fmt.Errorf("install revision %s: %w", rev, err)
	}
	prev, err := r.stacked(ab.Try)
	if err != nil {
		return false, fmt.Errorf("install revision %s: %w", rev, err)
	}
	revs, reboot := stackRevs(prev, rev)
	if !r.holdsImage(prev, img) {
		if err := r.installImage(ab.Try, img); err != nil {
			return false, fmt.Errorf("install revision %s: %w", rev, err)
		}
		revs, reboot = []string{rev}, len(prev) > 0 && !slices.Equal(prev, revs)
	}
	if err := r.writeRevs(ab.Try, revs); err != nil {
		return false, fmt.Errorf("install revision %s: %w", rev, err)
	}
	if err := r.Save(before.installed(rev)); err != nil {
		return false, fmt.Errorf("install revision %s: %w", rev, r.undoInstall(before, err))
	}
	if err := r.arm(); err != nil {
		return false, fmt.Errorf("install revision %s: arm tryboot: %w", rev, r.undoInstall(before, err))
	}
	return reboot, nil
}

// arm arms the tryboot flag. Its write may fail after its rename (the
// fsync of the directory), the flag then in place: an arming that
// returns an error takes the flag back when it was not armed before, so
// that the undone install leaves no tryboot with no pv_try (safe mode).
// One armed before (updates stacked on the same image) stays armed, for
// the revision the undo puts back.
func (r RPiAB) arm() error {
	was, err := r.armed()
	if err != nil {
		return err
	}
	write := storage.WriteFileAtomic
	if r.writeFlag != nil {
		write = r.writeFlag
	}
	err = write(r.TrybootFlag, []byte("1\n"), 0o644)
	if err != nil && !was {
		if derr := r.disarm(); derr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", derr))
		}
	}
	return err
}

// undoInstall puts back the variables before, as they were before an
// install whose save of pv_try, or arming of the flag, returned err. A
// save's error may come after its rename (the fsync of the directory):
// pv_try=rev is stored then, with no flag, a normal boot read as the
// rollback of an update that was refused. A revision armed before
// (stacked) keeps its pv_try, under the flag still armed for it, or, when
// the image write disarmed it, is rolled back by the next boot as its
// image is gone. What is stored after it is judged by Confirm, as
// everywhere: the undo may fail as the save did.
func (r RPiAB) undoInstall(before Env, err error) error {
	if uerr := r.Save(before); uerr != nil {
		return errors.Join(err, fmt.Errorf("undo: %w", uerr))
	}
	return err
}

// ListedCommitted returns the revision the partition a normal boot loads
// (autoboot.txt's [all]) lists alone in its pv_rev.txt: what a commit
// leaves there (Commit switches autoboot.txt to the partition of the
// revision, then cuts its list to it), the committed revision when the
// variables no longer say it. An error when that partition lists none,
// or several (a commit cut before it cut the list).
func (r RPiAB) ListedCommitted() (string, error) {
	if err := r.check(); err != nil {
		return "", fmt.Errorf("committed revision of the boot partitions: %w", err)
	}
	ab, err := r.autoboot()
	if err != nil {
		return "", fmt.Errorf("committed revision of the boot partitions: %w", err)
	}
	revs, err := r.revs(ab.Boot)
	if err != nil {
		return "", fmt.Errorf("committed revision of the boot partitions: %w", err)
	}
	if len(revs) != 1 {
		return "", fmt.Errorf("committed revision of the boot partitions: partition %d lists %v, not one revision", ab.Boot, revs)
	}
	return revs[0], nil
}

// Installed reports whether a reboot now tries rev: pv_try=rev without a
// latch naming it, and the tryboot flag armed, which lies outside the
// variables (updater.Device.Install judges an install that returned an
// error by it).
func (r RPiAB) Installed(env Env, rev string) (bool, error) {
	if !env.IsInstalled(rev) {
		return false, nil
	}
	return r.armed()
}

// stacked returns the revisions the try partition lists when the flag
// is armed (updates installed since the last reboot), none when it is
// not: a fresh install.
func (r RPiAB) stacked(try int) ([]string, error) {
	armed, err := r.armed()
	if err != nil || !armed {
		return nil, err
	}
	prev, err := r.revs(try)
	if err != nil && !unlisted(err) {
		return nil, err
	}
	return prev, nil
}

// holdsImage says whether the try partition, listing prev, holds img
// already: every revision of prev has img's object for its image.
func (r RPiAB) holdsImage(prev []string, img BootImage) bool {
	if len(prev) == 0 || img.Object == "" {
		return false
	}
	for _, p := range prev {
		if pi, err := r.Image(p); err != nil || pi.Object != img.Object {
			return false
		}
	}
	return true
}

// Commit makes rev the revision of every later boot: pv_rev=rev and pv_try
// unset in rpiab.txt; the tryboot flag disarmed (a tryboot now would load
// the old partition); autoboot.txt pointed at the partition whose
// pv_rev.txt lists rev (swapping [all] and [tryboot]), unless [all]
// already is; and that list cut to rev alone. A crash after rpiab.txt and
// before autoboot.txt boots the old partition: Running then returns
// ErrCommitUnfinished, and Commit again finishes the job.
func (r RPiAB) Commit(rev string) error {
	if err := checkRev(rev); err != nil {
		return fmt.Errorf("commit revision: %w", err)
	}
	if err := r.check(); err != nil {
		return fmt.Errorf("commit revision %s: %w", rev, err)
	}
	ab, err := r.autoboot()
	if err != nil {
		return fmt.Errorf("commit revision %s: %w", rev, err)
	}
	target, err := r.partitionOf(ab, rev)
	if err != nil {
		return fmt.Errorf("commit revision %s: %w", rev, err)
	}
	if err := change(r, "commit revision "+rev, func(e Env) Env { return e.committed(rev) }); err != nil {
		return err
	}
	if err := r.disarm(); err != nil {
		return fmt.Errorf("commit revision %s: %w", rev, err)
	}
	if target != ab.Boot {
		swapped := autoboot{Boot: ab.Try, Try: ab.Boot}
		if err := storage.WriteFileAtomic(r.autobootPath(), swapped.format(), 0o644); err != nil {
			return fmt.Errorf("commit revision %s: switch autoboot.txt: %w", rev, err)
		}
	}
	if err := r.writeRevs(target, []string{rev}); err != nil {
		return fmt.Errorf("commit revision %s: %w", rev, err)
	}
	return nil
}

// Fail drops the pending update: the tryboot flag disarmed first (a reboot
// must not try what failed), then pv_try unset.
func (r RPiAB) Fail() error {
	if err := r.check(); err != nil {
		return fmt.Errorf("fail update: %w", err)
	}
	if err := r.disarm(); err != nil {
		return fmt.Errorf("fail update: %w", err)
	}
	return change(r, "fail update", Env.failed)
}

// Running returns the revision this boot runs, as upstream's
// validate_state decides it from the tryboot property, the booted
// partition's pv_rev.txt and env (rpiab.txt). A partition without
// pv_rev.txt (a factory image) runs the committed revision.
func (r RPiAB) Running(env Env) (string, error) {
	if err := r.check(); err != nil {
		return "", fmt.Errorf("read running revision: %w", err)
	}
	tryboot, err := r.tryboot()
	if err != nil {
		return "", fmt.Errorf("read running revision: %w", err)
	}
	ab, err := r.autoboot()
	if err != nil {
		return "", fmt.Errorf("read running revision: %w", err)
	}
	booted, other := r.bootedPartition(ab, tryboot)
	// The partition booted not mounted (a tryboot of one whose mount
	// failed: a normal boot needs it mounted to start): the firmware
	// loaded its files, and which revisions they are for is unknown.
	if err := r.needMounted(booted); err != nil {
		if tryboot {
			return "", fmt.Errorf("read running revision: %w: this tryboot loaded %w", ErrTryUnreadable, err)
		}
		return "", fmt.Errorf("read running revision: this boot loaded %w", err)
	}
	revs, err := r.revs(booted)
	if err != nil && tryboot && env.Try() != "" {
		// Install writes pv_rev.txt before it arms the flag: in a
		// tryboot of an install, a list that is missing or unreadable
		// is the try partition's damage, as one that does not mount.
		return "", fmt.Errorf("read running revision: %w: this tryboot loaded partition %d: %w", ErrTryUnreadable, booted, err)
	}
	if errors.Is(err, os.ErrNotExist) {
		return env.Committed(), nil
	}
	if err != nil {
		return "", fmt.Errorf("read running revision: %w", err)
	}
	// The partition not booted may be unmounted, or mount with a
	// pv_rev.txt that is missing, empty or garbage: a power cut during
	// its image write leaves it a mix of old and new blocks (the flag
	// was disarmed first, so this is a normal boot). This boot needs
	// nothing of it; its list only tells a commit cut short, which a
	// torn partition cannot be. Read as listing nothing, or the
	// committed revision, intact on the booted partition, would not run.
	otherRevs, _ := r.revs(other)
	// A normal boot of what autoboot.txt now names the [tryboot]
	// partition: a commit swapped it during this boot (a non-reboot
	// update committed, or a commit cut short and finished by Start),
	// after which the supervisor asks again. The committed revision, on
	// [all], is what runs from here on.
	if !tryboot && booted == ab.Try && env.Try() == "" && slices.Contains(otherRevs, env.Committed()) {
		return env.Committed(), nil
	}
	rev, err := runningRev(tryboot, booted, revs, otherRevs, env)
	if err != nil {
		return "", fmt.Errorf("read running revision: %w", err)
	}
	return rev, nil
}

// bootedPartition returns the partition this boot loaded and the other
// one: as the firmware's partition property says, when it names one of
// ab's; else as autoboot.txt says a boot of this kind loads, which holds
// until a commit during this boot swaps it (a supervisor started again
// after the commit asks once more).
func (r RPiAB) bootedPartition(ab autoboot, tryboot bool) (booted, other int) {
	path := r.PartitionProperty
	if path == "" {
		path = DefaultPartitionProperty
	}
	if data, err := os.ReadFile(path); err == nil && len(data) == 4 {
		switch p := int(binary.BigEndian.Uint32(data)); p {
		case ab.Boot:
			return ab.Boot, ab.Try
		case ab.Try:
			return ab.Try, ab.Boot
		}
	}
	if tryboot {
		return ab.Try, ab.Boot
	}
	return ab.Boot, ab.Try
}

// runningRev is upstream's validate_state: in a tryboot, pv_try, which the
// booted partition must list, or, with no pv_try, the committed revision
// it lists (the try committed during this boot, asked again by a
// supervisor started again); in a normal boot with pv_try set, the
// committed revision (the try never ran, or crashed: a rollback, whatever
// the partition lists); otherwise the committed revision, which the booted
// partition must list.
func runningRev(tryboot bool, booted int, revs, otherRevs []string, env Env) (string, error) {
	try, done := env.Try(), env.Committed()
	switch {
	case tryboot && try == "" && slices.Contains(revs, done):
		return done, nil
	case tryboot && try == "":
		return "", fmt.Errorf("a tryboot of partition %d with no pv_try", booted)
	case tryboot && !slices.Contains(revs, try):
		return "", fmt.Errorf("a tryboot of partition %d for revisions %v, not pv_try %s", booted, revs, try)
	case tryboot:
		return try, nil
	case try != "":
		return done, nil
	case slices.Contains(revs, done):
		return done, nil
	case slices.Contains(otherRevs, done):
		return "", fmt.Errorf("partition %d booted for revisions %v, committed %s: %w", booted, revs, done, ErrCommitUnfinished)
	default:
		return "", fmt.Errorf("partition %d booted for revisions %v, not the committed %s", booted, revs, done)
	}
}

// BootPartitions returns the partitions autoboot.txt names: the one a
// normal boot loads ([all]) and the one a tryboot loads ([tryboot]).
func (r RPiAB) BootPartitions() (boot, try int, err error) {
	ab, err := r.autoboot()
	return ab.Boot, ab.Try, err
}

func (r RPiAB) autoboot() (autoboot, error) {
	data, err := os.ReadFile(r.autobootPath())
	if err != nil {
		return autoboot{}, fmt.Errorf("read autoboot.txt: %w", err)
	}
	ab, err := parseAutoboot(data)
	if err != nil {
		return autoboot{}, fmt.Errorf("read autoboot.txt %s: %w", r.autobootPath(), err)
	}
	for _, p := range []int{ab.Boot, ab.Try} {
		if r.Partitions[p] == "" {
			return autoboot{}, fmt.Errorf("autoboot.txt names partition %d, not one of the boot partitions", p)
		}
	}
	return ab, nil
}

// partitionOf returns the partition of ab whose pv_rev.txt lists rev,
// [all]'s first.
func (r RPiAB) partitionOf(ab autoboot, rev string) (int, error) {
	for _, p := range []int{ab.Boot, ab.Try} {
		revs, err := r.revs(p)
		if err != nil && !unlisted(err) {
			return 0, err
		}
		if slices.Contains(revs, rev) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("neither boot partition %d nor %d lists revision %s in pv_rev.txt", ab.Boot, ab.Try, rev)
}

func (r RPiAB) revsPath(part int) string { return filepath.Join(r.Partitions[part], "pv_rev.txt") }

// RemoveLeftovers removes the temporary files power cuts left of the
// crash-safe writes to the boot partitions (".autoboot.txt.tmp…",
// ".pv_rev.txt.tmp…"), which storage's start-up sweep does not reach,
// and returns those it removed. Each is small, but nothing else ever
// removes them, and a device cut at every update would pile them up on a
// partition of a few megabytes. Run it before anything writes to the
// partitions: it takes a write under way for a leftover.
func (r RPiAB) RemoveLeftovers() ([]string, error) {
	paths := []string{r.autobootPath()}
	for _, n := range slices.Sorted(maps.Keys(r.Partitions)) {
		if r.needMounted(n) == nil {
			paths = append(paths, r.revsPath(n))
		}
	}
	var removed []string
	var errs []error
	for _, p := range paths {
		names, err := atomicfile.Leftovers(p)
		errs = append(errs, err)
		for _, name := range names {
			if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, name)
		}
	}
	return removed, errors.Join(errs...)
}

// revs reads the revisions partition part's pv_rev.txt lists; an error
// for which unlisted holds when it lists none.
func (r RPiAB) revs(part int) ([]string, error) {
	if err := r.needMounted(part); err != nil {
		return nil, fmt.Errorf("read pv_rev.txt: %w", err)
	}
	data, err := os.ReadFile(r.revsPath(part))
	if err != nil {
		return nil, fmt.Errorf("read pv_rev.txt of partition %d: %w", part, err)
	}
	revs, err := parseRevList(data)
	if err != nil {
		return nil, fmt.Errorf("read pv_rev.txt %s: %w", r.revsPath(part), err)
	}
	return revs, nil
}

// unlisted says whether err of revs means the partition lists no
// revision: it has no pv_rev.txt (a factory image), or is not mounted.
func unlisted(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, errUnmounted)
}

func (r RPiAB) writeRevs(part int, revs []string) error {
	if err := r.needMounted(part); err != nil {
		return fmt.Errorf("write pv_rev.txt: %w", err)
	}
	if err := storage.WriteFileAtomic(r.revsPath(part), formatRevList(revs), 0o644); err != nil {
		return fmt.Errorf("write pv_rev.txt of partition %d: %w", part, err)
	}
	return nil
}

func (r RPiAB) armed() (bool, error) {
	_, err := os.Stat(r.TrybootFlag)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read tryboot flag: %w", err)
	}
	return true, nil
}

func (r RPiAB) disarm() error {
	err := os.Remove(r.TrybootFlag)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("disarm tryboot: %w", err)
	}
	return storage.SyncDir(filepath.Dir(r.TrybootFlag))
}

// TakeTryboot consumes the tryboot flag for the coming reboot, as the
// firmware consumes its own: true when it was armed, and the reboot must
// then be `reboot "0 tryboot"`.
func (r RPiAB) TakeTryboot() (bool, error) {
	armed, err := r.armed()
	if err != nil || !armed {
		return false, err
	}
	if err := r.disarm(); err != nil {
		return false, err
	}
	return true, nil
}

// Tryboot says whether this boot is a tryboot, as the firmware's tryboot
// property says.
func (r RPiAB) Tryboot() (bool, error) { return r.tryboot() }

// tryboot reads the firmware's tryboot property.
func (r RPiAB) tryboot() (bool, error) {
	path := r.TrybootProperty
	if path == "" {
		path = DefaultTrybootProperty
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read tryboot property: %w", err)
	}
	if len(data) != 4 {
		return false, fmt.Errorf("tryboot property %s: %d bytes, want a 32-bit cell", path, len(data))
	}
	return binary.BigEndian.Uint32(data) != 0, nil
}

package blockdev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	sysBlock = "/sys/class/block"
	devDir   = "/dev"
)

// device is a block device: its node in /dev and its number.
type device struct {
	node string
	rdev uint64
}

// Resolve returns the device node spec names. A spec that is not a tag
// (a path such as /dev/mmcblk0p2) is returned as it is, unchecked.
// LABEL=x and UUID=x are looked for on every block device the kernel
// lists (/sys/class/block; the node is devtmpfs's /dev/<name>), each
// identified by its superblock, and in udev's /dev/disk/by-label and
// by-uuid, which name filesystems this package cannot read. PARTUUID=x
// and PARTLABEL=x are looked for on every partition the kernel lists, in
// its disk's partition table (DOS or GPT, parseTable), and in udev's
// /dev/disk/by-partuuid and by-partlabel. No match wraps ErrNotFound (a
// disk may be probed later); two devices with the tag are an error naming
// both, since mounting either could be mounting the wrong storage.
//
// Reading a device only opens it read-only and reads its first 4 KiB
// (and a FAT's root directory up to its label), or for a partition tag
// its disk's partition table; one with no filesystem or table known, no
// medium, or size 0 is passed over. So is one that does not answer
// within probeTimeout. One that fails (an I/O error, as a failing disk
// gives, or an open failing otherwise than for want of a medium) is
// matched on what could be read of it; a short read at its end is no
// failure. unread names the devices that did not answer or failed, each
// as "node: why" (for a partition tag, the disks; a partition that failed
// as its disk did is named in the disk's entry), with a match as well
// as without, for the caller to log: one of them may carry the tag
// unseen. ErrNotFound's error names them too, so that a device that
// never comes up says which disk failed and how.
func Resolve(spec string) (dev string, unread []string, err error) {
	t, ok, err := parseSpec(spec)
	if err != nil {
		return "", nil, err
	}
	if !ok {
		return spec, nil, nil
	}
	scanOf := scan
	if t.partition() {
		scanOf = scanPartitions
	}
	hits, blocked, unread, err := scanOf(t)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", spec, err)
	}
	// A udev link to a device that does not answer (or is on a disk that
	// does not) is not followed: mounting it would hang as the probe did.
	if h, ok := udevLink(t); ok && !contains(hits, h.rdev) && !contains(blocked, h.rdev) {
		hits = append(hits, h)
	}
	// A device that did not answer is not counted as a second carrier of
	// the tag, though it may be one: it cannot be mounted either (mount
	// reads the superblock the probe could not), so refusing the readable
	// one for its sake would keep the device from ever coming up, for no
	// storage it could use instead. The caller names it in its log; once
	// it answers, a later call counts it, and two carriers are refused.
	switch len(hits) {
	case 0:
		return "", unread, notFound(spec, unread)
	case 1:
		return hits[0].node, unread, nil
	}
	return "", unread, fmt.Errorf("%s: found on %s: refusing to choose one", spec, strings.Join(nodes(hits), " and "))
}

// notFound is ErrNotFound for spec, naming the devices that could not be
// read and why (unread): the error a caller gives up with when the wait
// is over.
func notFound(spec string, unread []string) error {
	if len(unread) == 0 {
		return fmt.Errorf("%s: %w", spec, ErrNotFound)
	}
	return fmt.Errorf("%s: %w (%s)", spec, ErrNotFound, strings.Join(unread, "; "))
}

// noAnswer is how unread names d, which did not answer within
// probeTimeout.
func noAnswer(d device) string {
	return fmt.Sprintf("%s: did not answer a read within %v", d.node, probeTimeout)
}

// probeTimeout is how long a scan waits for the devices to answer. A
// healthy one answers a 4 KiB read in milliseconds (the kernel has read
// its partition table before listing it); one that has not answered by
// then may never (a suspended device-mapper volume, a dead USB stick, an
// NBD without its server), and waiting on it would keep the storage on
// another device from ever being found.
const probeTimeout = 2 * time.Second

// scan probes every block device of the kernel's at once and returns
// those whose superblock carries t; those that did not answer within
// probeTimeout or whose probe from an earlier scan is still stuck
// (blocked: the devices whose tag is unknown); and unread, which names
// those and the devices that failed (Resolve).
func scan(t tag) (hits, blocked []device, unread []string, err error) {
	devs, err := devices()
	if err != nil {
		return nil, nil, nil, err
	}
	probes := make([]<-chan probeResult, len(devs))
	for i, d := range devs {
		probes[i] = startProbe(d.device, func() probeResult {
			in, err := readInfo(d.node, d.rdev)
			return probeResult{in: in, err: err}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var failed []failure
	for i, d := range devs {
		r, ok := await(ctx, probes[i])
		if !ok {
			blocked = append(blocked, d.device)
			failed = append(failed, failure{d, noAnswer(d.device)})
			continue
		}
		if r.err != nil {
			failed = append(failed, failure{d, r.err.Error()})
		}
		if t.matches(r.in) {
			hits = append(hits, d.device)
		}
	}
	return hits, blocked, foldPartitions(failed), nil
}

// failure is a device that a scan could not read, and how unread names
// it ("node: why").
type failure struct {
	dev  sysDevice
	text string
}

// foldPartitions is unread for failed, where a partition that failed as
// its disk did is named in its disk's entry rather than in one of its
// own: a dead disk with eight partitions is one fault, and nine entries
// of the same error would bury a second disk's in the log line. A
// partition that failed otherwise keeps its entry.
func foldPartitions(failed []failure) []string {
	cause := func(f failure) string { return strings.TrimPrefix(f.text, f.dev.node) }
	disk := map[uint64]int{} // rdev → index in failed
	for i, f := range failed {
		disk[f.dev.rdev] = i
	}
	parts := make([][]string, len(failed)) // by the disk's index
	folded := make([]bool, len(failed))
	for i, f := range failed {
		_, d, ok := partitionOf(f.dev)
		if !ok {
			continue
		}
		if j, ok := disk[d.rdev]; ok && cause(failed[j]) == cause(f) {
			parts[j] = append(parts[j], f.dev.node)
			folded[i] = true
		}
	}
	var unread []string
	for i, f := range failed {
		switch {
		case folded[i]:
		case len(parts[i]) > 0:
			unread = append(unread, fmt.Sprintf("%s (its partitions too: %s)", f.text, strings.Join(parts[i], ", ")))
		default:
			unread = append(unread, f.text)
		}
	}
	return unread
}

// scanPartitions reads the partition table of every disk with a
// partition at once, as scan probes devices (under the same probeTimeout,
// a disk stuck from an earlier scan not read again), and returns the
// partitions whose entry carries t; the disks that did not answer and
// the partitions on those (blocked: whose entries are unknown); and
// unread, which names the disks that did not answer or failed.
func scanPartitions(t tag) (hits, blocked []device, unread []string, err error) {
	devs, err := devices()
	if err != nil {
		return nil, nil, nil, err
	}
	var parts []sysPartition
	var disks []sysDisk
	seen := map[uint64]int{} // disk rdev → index in disks
	for _, d := range devs {
		p, disk, ok := partitionOf(d)
		if !ok {
			continue
		}
		i, ok := seen[disk.rdev]
		if !ok {
			i = len(disks)
			seen[disk.rdev] = i
			disks = append(disks, disk)
		}
		p.disk = i
		parts = append(parts, p)
	}
	probes := make([]<-chan probeResult, len(disks))
	for i, d := range disks {
		probes[i] = startProbe(d.device, func() probeResult {
			pt, err := readTable(d)
			return probeResult{table: pt, err: err}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var stuck []device
	tables := make([]probeResult, len(disks))
	answered := make([]bool, len(disks))
	for i, d := range disks {
		tables[i], answered[i] = await(ctx, probes[i])
		switch {
		case !answered[i]:
			stuck = append(stuck, d.device)
			unread = append(unread, noAnswer(d.device))
		case tables[i].err != nil:
			unread = append(unread, tables[i].err.Error())
		}
	}
	for _, p := range parts {
		r := tables[p.disk]
		if !answered[p.disk] {
			blocked = append(blocked, p.device)
			continue
		}
		if e, ok := r.table.find(p.num, p.start, p.size); ok && t.matchesEntry(e) {
			hits = append(hits, p.device)
		}
	}
	return hits, append(blocked, stuck...), unread, nil
}

// sysDevice is a block device and its directory in /sys/class/block.
type sysDevice struct {
	device
	dir string
}

// sysPartition is a partition as sysfs describes it.
type sysPartition struct {
	device
	num, start, size uint64 // size and start in 512-byte sectors
	disk             int    // its disk, an index in scanPartitions' list
}

// sysDisk is a disk with partitions, as sysfs describes it.
type sysDisk struct {
	device
	sectorSize uint64 // logical
	size       uint64 // in bytes
}

// partitionOf describes d if it is a partition (its sysfs directory has
// a partition file, holding its number), and its disk, the directory
// above it in /sys/devices. ok is false for anything else, and for a
// partition whose disk sysfs does not describe in full.
func partitionOf(d sysDevice) (p sysPartition, disk sysDisk, ok bool) {
	var err error
	p.device = d.device
	if p.num, err = readUint(filepath.Join(d.dir, "partition")); err != nil {
		return sysPartition{}, sysDisk{}, false
	}
	if p.start, err = readUint(filepath.Join(d.dir, "start")); err != nil {
		return sysPartition{}, sysDisk{}, false
	}
	if p.size, err = readUint(filepath.Join(d.dir, "size")); err != nil {
		return sysPartition{}, sysDisk{}, false
	}
	resolved, err := filepath.EvalSymlinks(d.dir)
	if err != nil {
		return sysPartition{}, sysDisk{}, false
	}
	dir := filepath.Dir(resolved)
	if disk.node, disk.rdev, err = nodeOf(dir); err != nil {
		return sysPartition{}, sysDisk{}, false
	}
	if disk.sectorSize, err = readUint(filepath.Join(dir, "queue", "logical_block_size")); err != nil {
		return sysPartition{}, sysDisk{}, false
	}
	sectors, err := readUint(filepath.Join(dir, "size"))
	if err != nil || sectors > math.MaxUint64/512 {
		return sysPartition{}, sysDisk{}, false
	}
	disk.size = sectors * 512
	return p, disk, true
}

// devices lists the block devices of the kernel's that have a medium.
func devices() ([]sysDevice, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	var devs []sysDevice
	for _, e := range entries {
		dir := filepath.Join(sysBlock, e.Name())
		// In sectors; 0 for an empty drive or a loop device with no file.
		if size, err := readTrimmed(filepath.Join(dir, "size")); err != nil || size == "0" {
			continue
		}
		if node, rdev, err := nodeOf(dir); err == nil {
			devs = append(devs, sysDevice{device{node, rdev}, dir})
		}
	}
	return devs, nil
}

// probeResult is what a probe read: a filesystem, or a partition table
// (zero for none known, which matches no tag), and the device's failure,
// which may have cut the read short (readInfo, readTable).
type probeResult struct {
	in    Info
	table partTable
	err   error
}

// probing holds the devices, by number, whose probe has not returned: a
// later scan passes them over rather than start another reader that
// would be stuck beside the first, so a wait loop calling Resolve does
// not pile up goroutines on a device that never answers.
var probing = struct {
	sync.Mutex
	rdev map[uint64]bool
}{rdev: map[uint64]bool{}}

// startProbe runs read, a read of d (its filesystem, or its partition
// table), in a goroutine of its own, whose result the channel returned
// delivers; nil if a probe of d is still running. No one waits for the
// goroutine: one stuck in the kernel stays so until the device answers,
// then ends and lets d be probed again.
func startProbe(d device, read func() probeResult) <-chan probeResult {
	probing.Lock()
	defer probing.Unlock()
	if probing.rdev[d.rdev] {
		return nil
	}
	probing.rdev[d.rdev] = true
	ch := make(chan probeResult, 1)
	go func() {
		r := read()
		probing.Lock()
		delete(probing.rdev, d.rdev)
		probing.Unlock()
		ch <- r
	}()
	return ch
}

// await is the result of probe p, or false if it has not come when ctx
// is done (or p is nil: a probe from an earlier scan still runs).
func await(ctx context.Context, p <-chan probeResult) (probeResult, bool) {
	if p == nil {
		return probeResult{}, false
	}
	select {
	case r := <-p:
		return r, true
	case <-ctx.Done():
	}
	// Both may be ready at once; select picks either.
	select {
	case r := <-p:
		return r, true
	default:
		return probeResult{}, false
	}
}

// nodeOf is the /dev node of the device whose sysfs directory is dir and
// its device number. The name comes from uevent's DEVNAME, which has the
// subdirectory of names such as cciss/c0d0 that the sysfs name spells
// with '!'.
func nodeOf(dir string) (string, uint64, error) {
	dev, err := readTrimmed(filepath.Join(dir, "dev"))
	if err != nil {
		return "", 0, err
	}
	maj, min, ok := strings.Cut(dev, ":")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return "", 0, fmt.Errorf("%s/dev: bad device number %q", dir, dev)
	}
	name := strings.ReplaceAll(filepath.Base(dir), "!", "/")
	if uevent, err := os.ReadFile(filepath.Join(dir, "uevent")); err == nil {
		for _, l := range strings.Split(string(uevent), "\n") {
			if v, ok := strings.CutPrefix(l, "DEVNAME="); ok && v != "" {
				name = v
			}
		}
	}
	return filepath.Join(devDir, name), unix.Mkdev(uint32(ma), uint32(mi)), nil
}

// readInfo probes the filesystem on node, which must be the block device
// rdev: Info{} for none known. err is the device's failure, naming node
// (deviceFault); a filesystem found on what could be read comes with it.
func readInfo(node string, rdev uint64) (Info, error) {
	return readDevice(node, rdev, "read filesystem", func(r io.ReaderAt) Info {
		in, _ := probe(r) // Info{} when nothing is found
		return in
	})
}

// readTable reads the partition table of disk d, as readInfo does its
// filesystem: partTable{} for none known.
func readTable(d sysDisk) (partTable, error) {
	return readDevice(d.node, d.rdev, "read partition table", func(r io.ReaderAt) partTable {
		pt, _ := parseTable(r, d.sectorSize, d.size) // partTable{} when none is found
		return pt
	})
}

// readDevice opens node, which must be the block device rdev, and gives
// it to parse through a faultLog; the error is the device's failure to
// open or to be read (what), naming node.
func readDevice[T any](node string, rdev uint64, what string, parse func(io.ReaderAt) T) (T, error) {
	fd, err := openDevice(node, rdev)
	if err != nil {
		var none T
		return none, faultOf(node, "open", err)
	}
	defer unix.Close(fd)
	r := &faultLog{r: fdReader(fd)}
	v := parse(r)
	return v, faultOf(node, what, r.fault)
}

// deviceFault is err unless it is no failure of the device's: no medium
// (ENOMEDIUM; ENXIO, which an empty drive or a device gone may give), or
// a read that ends at the device's end (io.EOF, io.ErrUnexpectedEOF),
// which the parsers take for the end of what there is.
func deviceFault(err error) error {
	for _, quiet := range []error{io.EOF, io.ErrUnexpectedEOF, unix.ENOMEDIUM, unix.ENXIO} {
		if errors.Is(err, quiet) {
			return nil
		}
	}
	return err
}

// faultOf is err, met doing what to node, as Resolve names it, or nil if
// it is no failure of the device's (deviceFault).
func faultOf(node, what string, err error) error {
	if err = deviceFault(err); err == nil {
		return nil
	}
	return fmt.Errorf("%s: %s: %w", node, what, err)
}

// faultLog is a device, r, read by a parser, keeping fault, the first
// failure of a read of it (deviceFault). The parsers take a read that
// fails for one that comes short, and find what they can on the rest:
// this is how the caller learns that the device failed them.
type faultLog struct {
	r     io.ReaderAt
	fault error
}

func (l *faultLog) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		// offset's mark of an offset beyond any device's end, which a
		// corrupt table gave: not the device's failure.
		return 0, io.EOF
	}
	n, err := l.r.ReadAt(p, off)
	if l.fault == nil {
		l.fault = deviceFault(err)
	}
	return n, err
}

// openDevice opens node read-only, which must be the block device rdev:
// a static /dev may hold a stale node under the name.
func openDevice(node string, rdev uint64) (int, error) {
	fd, err := unix.Open(node, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != rdev {
		unix.Close(fd)
		return -1, fmt.Errorf("not block device %d:%d", unix.Major(rdev), unix.Minor(rdev))
	}
	return fd, nil
}

// fdReader reads a device by pread(2), without os.File, which would try
// to register a block device with the poller.
type fdReader int

func (fd fdReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Pread(int(fd), p[n:], off+int64(n))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, io.EOF
		}
		n += m
	}
	return n, nil
}

// udevLink is the device udev's by-label, by-uuid, by-partuuid or
// by-partlabel link names for t, when udev has run.
func udevLink(t tag) (device, bool) {
	dir, name := "", t.value
	switch t.key {
	case "LABEL":
		dir = "by-label"
	case "UUID":
		dir = "by-uuid"
	case "PARTUUID":
		// blkid prints PARTUUIDs in lower case, and udev names the link
		// so; FAT's UUIDs are upper case, so UUID= is taken as written.
		dir, name = "by-partuuid", strings.ToLower(name)
	case "PARTLABEL":
		dir = "by-partlabel"
	}
	node, err := filepath.EvalSymlinks(filepath.Join(devDir, "disk", dir, udevEncode(name)))
	if err != nil {
		return device{}, false
	}
	var st unix.Stat_t
	if err := unix.Stat(node, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return device{}, false
	}
	return device{node, st.Rdev}, true
}

func nodes(ds []device) []string {
	var ns []string
	for _, d := range ds {
		ns = append(ns, d.node)
	}
	return ns
}

func contains(ds []device, rdev uint64) bool {
	for _, d := range ds {
		if d.rdev == rdev {
			return true
		}
	}
	return false
}

// readUint reads a number sysfs prints in decimal.
func readUint(path string) (uint64, error) {
	s, err := readTrimmed(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

func readTrimmed(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

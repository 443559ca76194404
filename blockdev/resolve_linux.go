package blockdev

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	sysBlock = "/sys/class/block"
	devDir   = "/dev"
)

// found is a device that carries the tag.
type found struct {
	node string
	rdev uint64
}

// Resolve returns the device node spec names. A spec that is not a tag
// (a path such as /dev/mmcblk0p2) is returned as it is, unchecked.
// LABEL=x and UUID=x are looked for on every block device the kernel
// lists (/sys/class/block; the node is devtmpfs's /dev/<name>), each
// identified by its superblock, and in udev's /dev/disk/by-label and
// by-uuid, which name filesystems this package cannot read. No match
// wraps ErrNotFound (a disk may be probed later); two devices with the
// tag are an error naming both, since mounting either could be mounting
// the wrong storage. PARTUUID= and PARTLABEL= are refused.
//
// Reading a device only opens it read-only and reads its first 4 KiB
// (and a FAT's root directory up to its label); one that cannot be
// opened or read (no medium), or whose size is 0, is passed over.
func Resolve(spec string) (string, error) {
	t, ok, err := parseSpec(spec)
	if err != nil {
		return "", err
	}
	if !ok {
		return spec, nil
	}
	hits, err := scan(t)
	if err != nil {
		return "", fmt.Errorf("%s: %w", spec, err)
	}
	if h, ok := udevLink(t); ok && !contains(hits, h.rdev) {
		hits = append(hits, h)
	}
	switch len(hits) {
	case 0:
		return "", fmt.Errorf("%s: %w", spec, ErrNotFound)
	case 1:
		return hits[0].node, nil
	}
	nodes := make([]string, len(hits))
	for i, h := range hits {
		nodes[i] = h.node
	}
	return "", fmt.Errorf("%s: found on %s: refusing to choose one", spec, strings.Join(nodes, " and "))
}

// scan reads the superblock of every block device of the kernel's.
func scan(t tag) ([]found, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	var hits []found
	for _, e := range entries {
		dir := filepath.Join(sysBlock, e.Name())
		// In sectors; 0 for an empty drive or a loop device with no file.
		if size, err := readTrimmed(filepath.Join(dir, "size")); err != nil || size == "0" {
			continue
		}
		node, rdev, err := nodeOf(dir)
		if err != nil {
			continue
		}
		in, err := readInfo(node, rdev)
		if err != nil || !t.matches(in) {
			continue
		}
		hits = append(hits, found{node, rdev})
	}
	return hits, nil
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
// rdev: a static /dev may hold a stale node under the name.
func readInfo(node string, rdev uint64) (Info, error) {
	fd, err := unix.Open(node, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return Info{}, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Info{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != rdev {
		return Info{}, fmt.Errorf("%s: not block device %d:%d", node, unix.Major(rdev), unix.Minor(rdev))
	}
	in, ok := probe(fdReader(fd))
	if !ok {
		return Info{}, errors.New("no known filesystem")
	}
	return in, nil
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

// udevLink is the device udev's by-label or by-uuid link names for t,
// when udev has run.
func udevLink(t tag) (found, bool) {
	dir := "by-label"
	if t.key == "UUID" {
		dir = "by-uuid"
	}
	node, err := filepath.EvalSymlinks(filepath.Join(devDir, "disk", dir, udevEncode(t.value)))
	if err != nil {
		return found{}, false
	}
	var st unix.Stat_t
	if err := unix.Stat(node, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return found{}, false
	}
	return found{node, st.Rdev}, true
}

func contains(hits []found, rdev uint64) bool {
	for _, h := range hits {
		if h.rdev == rdev {
			return true
		}
	}
	return false
}

func readTrimmed(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

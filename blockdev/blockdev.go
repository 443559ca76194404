// Package blockdev finds the block device a blkid-style tag names
// (LABEL=root, UUID=…, PARTUUID=…, PARTLABEL=…), as upstream Pantavisor's
// PV_STORAGE_DEVICE does with libblkid. It reads the filesystem
// superblocks (ext2/3/4, FAT12/16/32, f2fs) and the partition tables (DOS
// MBR, GPT) itself: at boot no udev has made /dev/disk/by-label yet, and
// a storage device the supervisor cannot find is a device that reboots
// for ever.
package blockdev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrNotFound is wrapped by Resolve when no device carries the tag yet: a
// caller waiting for a disk that is probed late retries on it.
var ErrNotFound = errors.New("no block device matches")

// probeSize is how much of the start of a device is read: every
// superblock probed lies within it (f2fs's, the furthest, ends at
// 1024+124+1024). A FAT's label is read from its root directory.
const probeSize = 4096

// Info is what a filesystem's superblock says about itself, as blkid
// prints it.
type Info struct {
	Type  string // "ext4", "vfat", "f2fs", …
	Label string // "" for none
	UUID  string // "" for none
}

// tag is a parsed LABEL=x, UUID=x, PARTUUID=x or PARTLABEL=x.
type tag struct {
	key, value string
}

// parseSpec splits a blkid-style tag. ok is false for anything else, a
// path used as it is. A value may be quoted, as blkid allows (LABEL="a b").
func parseSpec(spec string) (t tag, ok bool, err error) {
	key, value, found := strings.Cut(spec, "=")
	if !found {
		return tag{}, false, nil
	}
	switch key {
	case "LABEL", "UUID", "PARTUUID", "PARTLABEL":
	default:
		return tag{}, false, nil
	}
	if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
		value = value[1 : len(value)-1]
	}
	if value == "" {
		return tag{}, false, fmt.Errorf("%s: empty %s", spec, key)
	}
	if key == "PARTUUID" && strings.Contains(value, "/") {
		// The kernel's root=PARTUUID=…/PARTNROFF=n: no partition's
		// PARTUUID has a slash, so it would be waited for in vain.
		return tag{}, false, fmt.Errorf("%s: a PARTUUID has no %q (the kernel's /PARTNROFF= is not supported): name the partition itself", spec, "/")
	}
	return tag{key, value}, true, nil
}

// partition reports whether t names a partition by its partition-table
// entry rather than a filesystem by its superblock.
func (t tag) partition() bool { return t.key == "PARTUUID" || t.key == "PARTLABEL" }

// matches reports whether a filesystem carries t. Labels are compared
// exactly, as blkid does; UUIDs without regard to case, since ext's are
// printed in lower case and FAT's in upper.
func (t tag) matches(in Info) bool {
	switch t.key {
	case "LABEL":
		return in.Label != "" && in.Label == t.value
	case "UUID":
		return in.UUID != "" && strings.EqualFold(in.UUID, t.value)
	}
	return false
}

// matchesEntry reports whether a partition-table entry carries t: a
// PARTUUID without regard to case (blkid prints lower case, the kernel
// compares without case), a PARTLABEL exactly, as blkid.
func (t tag) matchesEntry(e partEntry) bool {
	switch t.key {
	case "PARTUUID":
		return e.uuid != "" && strings.EqualFold(e.uuid, t.value)
	case "PARTLABEL":
		return e.name != "" && e.name == t.value
	}
	return false
}

// probe identifies the filesystem on r, a device or an image of one. ok
// is false for anything it does not know, or cannot read; it never
// panics, whatever r holds.
func probe(r io.ReaderAt) (in Info, ok bool) {
	head := make([]byte, probeSize)
	n, _ := r.ReadAt(head, 0) // a short device is probed on what it has
	head = head[:n]
	if in, ok = probeExt(head); ok {
		return in, true
	}
	if in, ok = probeF2FS(head); ok {
		return in, true
	}
	return probeFAT(r, head)
}

// ext2/3/4: the superblock at 1024 (struct ext2_super_block).
const (
	extSB            = 1024
	extMagicOff      = 56
	extMagic         = 0xEF53
	extLogBlockOff   = 24
	extRevOff        = 76
	extCompatOff     = 92
	extIncompatOff   = 96
	extROCompatOff   = 100
	extUUIDOff       = 104
	extLabelOff      = 120
	extCompatJournal = 0x4
	extJournalDev    = 0x8 // incompat: an external journal, not a filesystem
	// Features ext3 has: anything beyond is ext4's.
	ext3Incompat = 0x2 | 0x4 | 0x10 // filetype, recover, meta_bg
	ext3ROCompat = 0x1 | 0x2 | 0x4  // sparse_super, large_file, btree_dir
)

func probeExt(b []byte) (Info, bool) {
	if len(b) < extSB+extLabelOff+16 {
		return Info{}, false
	}
	sb := b[extSB:]
	le := binary.LittleEndian
	// The magic is two bytes only (a GPT's first partition name lies
	// there on a whole disk): the block size and revision must be sane too.
	if le.Uint16(sb[extMagicOff:]) != extMagic || le.Uint32(sb[extLogBlockOff:]) > 6 || le.Uint32(sb[extRevOff:]) > 1 {
		return Info{}, false
	}
	compat, incompat, rocompat := le.Uint32(sb[extCompatOff:]), le.Uint32(sb[extIncompatOff:]), le.Uint32(sb[extROCompatOff:])
	if incompat&extJournalDev != 0 {
		return Info{}, false
	}
	in := Info{Type: "ext2", Label: cString(sb[extLabelOff : extLabelOff+16]), UUID: formatUUID(sb[extUUIDOff : extUUIDOff+16])}
	switch {
	case incompat&^ext3Incompat != 0 || rocompat&^ext3ROCompat != 0:
		in.Type = "ext4"
	case compat&extCompatJournal != 0:
		in.Type = "ext3"
	}
	return in, true
}

// f2fs: the superblock at 1024 (struct f2fs_super_block).
const (
	f2fsSB       = 1024
	f2fsMagic    = 0xF2F52010
	f2fsUUIDOff  = 108
	f2fsLabelOff = 124
	f2fsLabelLen = 512 // UTF-16 units
)

func probeF2FS(b []byte) (Info, bool) {
	if len(b) < f2fsSB+f2fsLabelOff+2*f2fsLabelLen {
		return Info{}, false
	}
	sb := b[f2fsSB:]
	if binary.LittleEndian.Uint32(sb) != f2fsMagic {
		return Info{}, false
	}
	units := make([]uint16, 0, f2fsLabelLen)
	for i := 0; i < f2fsLabelLen; i++ {
		u := binary.LittleEndian.Uint16(sb[f2fsLabelOff+2*i:])
		if u == 0 {
			break
		}
		units = append(units, u)
	}
	return Info{Type: "f2fs", Label: string(utf16.Decode(units)), UUID: formatUUID(sb[f2fsUUIDOff : f2fsUUIDOff+16])}, true
}

// FAT: the boot sector, its BIOS parameter block and the extended one,
// at 0x24 for FAT12/16 and at 0x40 for FAT32.
const (
	fatBytesPerSec = 0x0B
	fatSecPerClus  = 0x0D
	fatReserved    = 0x0E
	fatNumFATs     = 0x10
	fatRootEntries = 0x11
	fatSectors16   = 0x13
	fatMedia       = 0x15
	fatSecPerFAT16 = 0x16 // 0 on FAT32
	fatSectors32   = 0x20
	fatSecPerFAT32 = 0x24
	fatRootCluster = 0x2C
	fat16EBPB      = 0x26 // boot signature; volume id, label, type follow
	fat32EBPB      = 0x42
	fat12Max       = 0xFF4 // the most clusters of each FAT width
	fat16Max       = 0xFFF4
	fat32Max       = 0x0FFFFFF6
	fatNoName      = "NO NAME"
	// How much of the root directory is searched for the volume label,
	// which mkfs.fat and Windows put first: a bound on what a device
	// with a full root directory and no label costs to read.
	fatMaxDirEntries = 4096
	fatMaxClusters   = 100 // of the FAT32 root directory's chain, as blkid
)

// probeFAT reads a FAT's boot sector, head, and its root directory on r,
// where the label is. It follows libblkid: the label is the root
// directory's volume label entry, the one Windows changes; the boot
// sector's copy (blkid's LABEL_FATBOOT, often stale) is taken only when
// the root directory has none, as blkid did before 2.33.
func probeFAT(r io.ReaderAt, b []byte) (Info, bool) {
	if len(b) < 512 || b[510] != 0x55 || b[511] != 0xAA {
		return Info{}, false
	}
	le := binary.LittleEndian
	// 0x55AA ends an MBR too: the parameters must be those of a FAT.
	bps, spc, reserved, nfats := uint64(le.Uint16(b[fatBytesPerSec:])), uint64(b[fatSecPerClus]),
		uint64(le.Uint16(b[fatReserved:])), uint64(b[fatNumFATs])
	if bps < 512 || bps > 4096 || bps&(bps-1) != 0 || spc == 0 || spc&(spc-1) != 0 ||
		reserved == 0 || nfats == 0 || (b[fatMedia] != 0xF0 && b[fatMedia] < 0xF8) {
		return Info{}, false
	}
	fat32 := le.Uint16(b[fatSecPerFAT16:]) == 0
	ebpb, fatLen, magics := fat16EBPB, uint64(le.Uint16(b[fatSecPerFAT16:])), []string{"FAT", "MSDOS"}
	if fat32 {
		ebpb, fatLen, magics = fat32EBPB, uint64(le.Uint32(b[fatSecPerFAT32:])), []string{"FAT32", "MSWIN"}
	}
	if fatLen == 0 || !hasAnyPrefix(b[ebpb+16:ebpb+24], magics) {
		return Info{}, false
	}
	sectors := uint64(le.Uint16(b[fatSectors16:]))
	if sectors == 0 {
		sectors = uint64(le.Uint32(b[fatSectors32:]))
	}
	rootEntries := uint64(le.Uint16(b[fatRootEntries:]))
	meta := reserved + nfats*fatLen + (rootEntries*32+bps-1)/bps
	if meta > sectors {
		return Info{}, false
	}
	clusters, most := (sectors-meta)/spc, uint64(fat32Max)
	if !fat32 {
		most = fat12Max
		if clusters > fat12Max {
			most = fat16Max
		}
	}
	if clusters > most {
		return Info{}, false
	}

	in := Info{Type: "vfat"}
	sig := b[ebpb]
	if fat32 || sig == 0x28 || sig == 0x29 {
		id := le.Uint32(b[ebpb+1:])
		in.UUID = fmt.Sprintf("%04X-%04X", id>>16, id&0xFFFF)
	}
	dataStart := (reserved + nfats*fatLen) * bps // FAT12/16: the root directory
	var label string
	var found bool
	if fat32 {
		label, found = fat32RootLabel(r, dataStart, reserved*bps, spc*bps, fatLen*bps/4, uint64(le.Uint32(b[fatRootCluster:])))
	} else {
		label, found, _ = fatDirLabel(r, dataStart, min(rootEntries, fatMaxDirEntries))
	}
	if !found && sig == 0x29 {
		if label = strings.TrimRight(string(b[ebpb+5:ebpb+16]), " "); label == fatNoName {
			label = ""
		}
	}
	in.Label = label
	return in, true
}

// fat32RootLabel follows the FAT32 root directory's cluster chain from
// cluster first, looking for the volume label.
func fat32RootLabel(r io.ReaderAt, dataStart, fatStart, clusterSize, fatEntries, first uint64) (string, bool) {
	next, searched := first, uint64(0)
	for range fatMaxClusters {
		if next < 2 || next >= fatEntries || searched >= fatMaxDirEntries {
			return "", false
		}
		n := min(clusterSize/32, fatMaxDirEntries-searched)
		label, found, end := fatDirLabel(r, dataStart+(next-2)*clusterSize, n)
		if found || end {
			return label, found
		}
		searched += n
		var e [4]byte
		if _, err := r.ReadAt(e[:], offset(fatStart+next*4)); err != nil {
			return "", false
		}
		next = uint64(binary.LittleEndian.Uint32(e[:]) & 0x0FFFFFFF)
	}
	return "", false
}

// fatDirLabel looks through n directory entries at off for the volume
// label entry (as blkid's search_fat_label). end is true at the end of
// the directory, or where it cannot be read.
func fatDirLabel(r io.ReaderAt, off, n uint64) (label string, found, end bool) {
	var buf [512]byte
	for i := uint64(0); i < n; i += uint64(len(buf) / 32) {
		k, _ := r.ReadAt(buf[:], offset(off+i*32))
		for j := 0; j+32 <= k && i+uint64(j/32) < n; j += 32 {
			e := buf[j : j+32]
			attr, cluster := e[11], binary.LittleEndian.Uint16(e[20:])|binary.LittleEndian.Uint16(e[26:])
			switch {
			case e[0] == 0:
				return "", false, true
			case e[0] == 0xE5 || cluster != 0 || attr&0x3F == 0x0F: // deleted, a file, a long name
			case attr&(0x08|0x10) == 0x08:
				return strings.TrimRight(string(e[:11]), " "), true, true
			}
		}
		if k < len(buf) {
			return "", false, true
		}
	}
	return "", false, false
}

// offset is o for ReadAt, or an offset no device has (ReadAt fails there)
// for one a corrupt boot sector made too large.
func offset(o uint64) int64 {
	if o > math.MaxInt64 {
		return -1
	}
	return int64(o)
}

func hasAnyPrefix(b []byte, prefixes []string) bool {
	for _, p := range prefixes {
		if bytes.HasPrefix(b, []byte(p)) {
			return true
		}
	}
	return false
}

// udevEncode escapes a label as udev does in its link names
// (encode_devnode_name): what is not alphanumeric, "#+-.:=@_" or a valid
// multi-byte UTF-8 sequence becomes \xNN.
func udevEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case size > 1,
			r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z',
			strings.ContainsRune("#+-.:=@_", r):
			b.WriteString(s[i : i+size])
		default:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		}
		i += size
	}
	return b.String()
}

// cString is b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// formatUUID prints 16 bytes as blkid does (8-4-4-4-12, lower case); an
// all-zero UUID is none.
func formatUUID(u []byte) string {
	if bytes.Equal(u, make([]byte, 16)) {
		return ""
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

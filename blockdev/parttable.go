package blockdev

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// partEntry is what a disk's partition table says of one partition, as
// blkid prints it for the partition's device (ID_PART_ENTRY_UUID,
// ID_PART_ENTRY_NAME).
type partEntry struct {
	num         uint64 // as Linux numbers it: sdaN, mmcblk0pN
	start, size uint64 // in 512-byte sectors, as sysfs gives them
	extended    bool   // a DOS extended partition, which Linux gives 1 KiB
	uuid        string // "" for none
	name        string // GPT only; "" for none
}

// partTable is the partition table of a disk: "dos" or "gpt".
type partTable struct {
	scheme  string
	entries []partEntry
}

// find is the entry of partition num, which sysfs says starts at start
// and has size sectors. As blkid (blkid_partlist_devno_to_partition),
// the entry must lie where the partition device does: a table rewritten
// since the kernel or partx made the partitions (or partitions the
// kernel made from something else, blkdevparts=) names other ones, and
// taking its names would mount the wrong part of the disk. The number
// must agree too, where blkid goes by position alone: stricter, never
// looser.
func (pt partTable) find(num, start, size uint64) (partEntry, bool) {
	for _, e := range pt.entries {
		if e.num == num && e.start == start && (e.size == size || e.extended && size <= 1024) {
			return e, true
		}
	}
	return partEntry{}, false
}

const (
	mbrSize        = 512
	mbrSigOff      = 440 // the disk signature, the DOS PARTUUID's first half
	mbrTableOff    = 446
	mbrTypeGPT     = 0xEE
	mbrMaxLogicals = 256 // extended boot records followed, at most
	mbrEmptyEBRs   = 100 // in a row without a partition: a loop, as blkid
	gptHeaderSize  = 92
	gptEntrySize   = 128
	// The largest entry array read (UEFI asks for at least 16 KiB, what
	// every tool writes: 128 entries): the kernel's, which kmallocs the
	// array whole and so makes no partitions of a disk whose array is
	// larger than KMALLOC_MAX_SIZE (4 MiB here). A header whose CRC holds
	// still must not make a probe read gigabytes. The array is read in
	// gptReadChunk pieces for its CRC, and only its first gptMaxParts
	// entries are kept: Linux numbers no partition above 256
	// (DISK_MAX_PARTS).
	gptMaxEntryBytes = 4 << 20
	gptReadChunk     = 64 << 10
	gptMaxParts      = 256
	gptNameLen       = 36 // UTF-16 code units
)

// parseTable reads the partition table of a disk, r, of diskSize bytes and
// logical sectors of sectorSize bytes. It follows libblkid, whose names
// udev's /dev/disk/by-part* links carry: a protective MBR (an entry of
// type 0xEE) means GPT, whose header and entries must pass their CRCs;
// anything else with 0x55AA that is neither a FAT boot sector nor has a
// bad boot indicator is a DOS table. ok is false for no table, or one
// that cannot be read; it never panics, whatever r holds, and reads at
// most a bounded amount of it.
func parseTable(r io.ReaderAt, sectorSize, diskSize uint64) (pt partTable, ok bool) {
	if sectorSize < 512 || sectorSize > 64<<10 || sectorSize&(sectorSize-1) != 0 {
		return partTable{}, false
	}
	mbr := make([]byte, mbrSize)
	if n, _ := r.ReadAt(mbr, 0); n < mbrSize || mbr[510] != 0x55 || mbr[511] != 0xAA {
		// Nor is it a GPT: blkid wants the protective MBR, as the kernel
		// does unless booted with gpt.
		return partTable{}, false
	}
	for i := range 4 {
		if mbr[mbrTableOff+16*i+4] == mbrTypeGPT {
			return parseGPT(r, sectorSize, diskSize)
		}
	}
	return parseDOS(r, mbr, sectorSize)
}

// mbrPart is one of the four entries of an MBR or extended boot record.
type mbrPart struct {
	boot, typ   byte
	start, size uint64 // in logical sectors
}

func mbrParts(sector []byte) [4]mbrPart {
	var ps [4]mbrPart
	for i := range ps {
		e := sector[mbrTableOff+16*i:]
		ps[i] = mbrPart{e[0], e[4], uint64(binary.LittleEndian.Uint32(e[8:])), uint64(binary.LittleEndian.Uint32(e[12:]))}
	}
	return ps
}

func (p mbrPart) isExtended() bool { return p.typ == 0x05 || p.typ == 0x0F || p.typ == 0x85 }

// parseDOS reads a DOS table: primary partitions 1-4 by their place in
// the MBR, logical ones from 5 on down the chain of extended boot records
// (as blkid's dos.c and the kernel's msdos.c number them). A partition's
// PARTUUID is the disk signature and its number, "%08x-%02x"; a disk
// whose signature is 0 has none, as in blkid (the kernel would give every
// such disk's first partition 00000000-01).
func parseDOS(r io.ReaderAt, mbr []byte, sectorSize uint64) (partTable, bool) {
	if bytes.HasPrefix(mbr, []byte("\xC9\xC2\xD4\xC1")) { // AIX, EBCDIC "IBMA": not a DOS table
		return partTable{}, false
	}
	if _, fat := probeFAT(bytes.NewReader(mbr), mbr); fat {
		// 0x55AA ends a FAT boot sector too; a FAT on a whole disk has
		// no partitions.
		return partTable{}, false
	}
	ps := mbrParts(mbr)
	for _, p := range ps {
		if p.boot != 0 && p.boot != 0x80 {
			return partTable{}, false
		}
	}
	sig := binary.LittleEndian.Uint32(mbr[mbrSigOff:])
	ssf := sectorSize / 512
	pt := partTable{scheme: "dos"}
	add := func(num, start, size uint64, extended bool) {
		e := partEntry{num: num, start: start * ssf, size: size * ssf, extended: extended}
		if sig != 0 {
			e.uuid = fmt.Sprintf("%08x-%02x", sig, num)
		}
		pt.entries = append(pt.entries, e)
	}
	for i, p := range ps {
		if p.size != 0 {
			add(uint64(i+1), p.start, p.size, p.isExtended())
		}
	}
	next := uint64(5)
	for _, p := range ps {
		if p.size != 0 && p.isExtended() {
			next = parseEBRs(r, p.start, p.size, sectorSize, next, add)
		}
	}
	return pt, true
}

// parseEBRs follows the chain of extended boot records of the extended
// partition at exStart (logical sectors), adding each logical partition
// with the numbers from num on, and returns the next number. Each record
// holds a data partition (relative to the record) and a link to the next
// record (relative to the extended partition); the third and fourth
// entries are taken only when they fit, as blkid and the kernel do. The
// chain is bounded: a corrupt one may loop.
func parseEBRs(r io.ReaderAt, exStart, exSize, sectorSize, num uint64, add func(num, start, size uint64, extended bool)) uint64 {
	cur, curSize, empty := exStart, exSize, 0
	sector := make([]byte, mbrSize)
	for range mbrMaxLogicals {
		if empty++; empty > mbrEmptyEBRs {
			break
		}
		if n, _ := r.ReadAt(sector, offset(cur*sectorSize)); n < mbrSize || sector[510] != 0x55 || sector[511] != 0xAA {
			break
		}
		ps := mbrParts(sector)
		for i, p := range ps {
			if p.size == 0 || p.isExtended() {
				continue
			}
			abs := cur + p.start
			if i >= 2 && (p.start+p.size > curSize || abs < exStart || abs+p.size > exStart+exSize) {
				continue
			}
			add(num, abs, p.size, false)
			num++
			empty = 0
		}
		link := -1
		for i, p := range ps {
			if p.size != 0 && p.isExtended() {
				link = i
				break
			}
		}
		if link < 0 {
			break
		}
		cur, curSize = exStart+ps[link].start, ps[link].size
	}
	return num
}

// parseGPT reads a GPT whose protective MBR has been seen. The primary
// header (LBA 1) is used if it and its entry array pass their checks;
// otherwise the backup at the disk's last LBA, under the same checks, as
// blkid does (and the kernel with "gpt" on its command line; without it,
// the kernel makes no partitions of such a disk, and there is nothing to
// match). So partitions partx made for a disk whose primary header is
// damaged come from the backup, and udev's links carry its names. With
// neither copy valid there is no table: a name is never taken from a
// header or entries that fail their CRC. A primary that is valid but
// whose entry array is beyond gptMaxEntryBytes is no table either, never
// a reason to read the backup: blkid takes the primary's names then, and
// a backup left stale could name the same partitions otherwise.
func parseGPT(r io.ReaderAt, sectorSize, diskSize uint64) (partTable, bool) {
	if diskSize < 2*sectorSize {
		return partTable{}, false
	}
	last := diskSize/sectorSize - 1
	h, ents, st := gptHeader(r, 1, last, sectorSize)
	switch st {
	case gptTooLarge:
		return partTable{}, false
	case gptInvalid:
		if h, ents, st = gptHeader(r, last, last, sectorSize); st != gptValid {
			return partTable{}, false
		}
	}
	ssf := sectorSize / 512
	pt := partTable{scheme: "gpt"}
	for i := uint64(0); i < uint64(len(ents))/gptEntrySize; i++ {
		e := ents[i*gptEntrySize : (i+1)*gptEntrySize]
		first, end := binary.LittleEndian.Uint64(e[32:]), binary.LittleEndian.Uint64(e[40:])
		// Numbers go by place, unused entries and those blkid ignores
		// (outside the usable area) included.
		if allZero(e[:16]) || end < first || first < h.firstUsable || end > h.lastUsable {
			continue
		}
		pt.entries = append(pt.entries, partEntry{
			num: i + 1, start: first * ssf, size: (end - first + 1) * ssf,
			uuid: formatGUID(e[16:32]), name: gptName(e[56:128]),
		})
	}
	return pt, true
}

type gptHdr struct {
	firstUsable, lastUsable uint64
}

// gptStatus is what gptHeader made of a header.
type gptStatus int

const (
	gptValid    gptStatus = iota
	gptInvalid            // fails a check: the other copy may be read
	gptTooLarge           // valid, its entry array beyond gptMaxEntryBytes
)

// gptHeader reads and checks the GPT header at lba, with the disk's last
// LBA last, as blkid's get_gpt_header: signature, size, CRC, its own LBA,
// the usable area within the disk and without the header, 128-byte
// entries (the size blkid and the kernel insist on), and the entry
// array's CRC. It returns the first gptMaxParts entries of the array.
func gptHeader(r io.ReaderAt, lba, last, sectorSize uint64) (gptHdr, []byte, gptStatus) {
	b := make([]byte, sectorSize)
	if n, _ := r.ReadAt(b, offset(lba*sectorSize)); uint64(n) < sectorSize || string(b[:8]) != "EFI PART" {
		return gptHdr{}, nil, gptInvalid
	}
	le := binary.LittleEndian
	hsz := uint64(le.Uint32(b[12:]))
	if hsz < gptHeaderSize || hsz > sectorSize {
		return gptHdr{}, nil, gptInvalid
	}
	want := le.Uint32(b[16:])
	le.PutUint32(b[16:], 0)
	if crc32.ChecksumIEEE(b[:hsz]) != want || le.Uint64(b[24:]) != lba {
		return gptHdr{}, nil, gptInvalid
	}
	h := gptHdr{le.Uint64(b[40:]), le.Uint64(b[48:])}
	if h.lastUsable < h.firstUsable || h.lastUsable > last || (h.firstUsable < lba && lba < h.lastUsable) {
		return gptHdr{}, nil, gptInvalid
	}
	entLBA, count, size := le.Uint64(b[72:]), uint64(le.Uint32(b[80:])), uint64(le.Uint32(b[84:]))
	if size != gptEntrySize || count == 0 || entLBA > last {
		return gptHdr{}, nil, gptInvalid
	}
	if count*size > gptMaxEntryBytes {
		return gptHdr{}, nil, gptTooLarge
	}
	ents, sum, ok := readEntries(r, entLBA*sectorSize, count*size)
	if !ok || sum != le.Uint32(b[88:]) {
		return gptHdr{}, nil, gptInvalid
	}
	return h, ents, gptValid
}

// readEntries reads the n bytes of an entry array at off in pieces,
// returning its CRC and its first gptMaxParts entries: a large array is
// checked whole without being held whole.
func readEntries(r io.ReaderAt, off, n uint64) (kept []byte, sum uint32, ok bool) {
	kept = make([]byte, 0, min(n, gptMaxParts*gptEntrySize))
	crc := crc32.NewIEEE()
	buf := make([]byte, min(n, gptReadChunk))
	for done := uint64(0); done < n; {
		p := buf[:min(n-done, uint64(len(buf)))]
		if m, _ := r.ReadAt(p, offset(off+done)); m < len(p) {
			return nil, 0, false
		}
		crc.Write(p)
		if room := uint64(cap(kept) - len(kept)); room > 0 {
			kept = append(kept, p[:min(room, uint64(len(p)))]...)
		}
		done += uint64(len(p))
	}
	return kept, crc.Sum32(), true
}

// formatGUID prints an on-disk GUID (its first three fields little
// endian) as blkid does: lower case; an all-zero one is none.
func formatGUID(g []byte) string {
	u := make([]byte, 16)
	le, be := binary.LittleEndian, binary.BigEndian
	be.PutUint32(u[0:], le.Uint32(g[0:]))
	be.PutUint16(u[4:], le.Uint16(g[4:]))
	be.PutUint16(u[6:], le.Uint16(g[6:]))
	copy(u[8:], g[8:16])
	return formatUUID(u)
}

// gptName decodes a GPT partition name, 36 UTF-16LE units ending at the
// first NUL, with trailing white space trimmed as blkid does. A surrogate
// pair is decoded as the character it stands for (blkid 2.38 writes each
// half as its own 3-byte sequence, which no one can type into a config),
// an unpaired surrogate as U+FFFD.
func gptName(b []byte) string {
	units := make([]uint16, 0, gptNameLen)
	for i := 0; i+1 < len(b) && i < 2*gptNameLen; i += 2 {
		u := binary.LittleEndian.Uint16(b[i:])
		if u == 0 {
			break
		}
		units = append(units, u)
	}
	return strings.TrimRight(string(utf16.Decode(units)), " \t\n\v\f\r")
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Package disktest makes partitioned disks for the tests of what finds
// storage by its partition (PARTUUID=, PARTLABEL=): DOS and GPT tables
// laid out as fdisk and sgdisk write them (neither tool need be
// installed), and loop devices with their partitions added by partx
// (BLKPG, from libblkid's reading of the table), which works on a kernel
// built without partition parsers.
package disktest

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/pantavisor/pv/internal/isolated"
)

// Size is the size of the disks made: 8 MiB, or more for an MBR whose
// partitions reach further.
const Size = 8 << 20

// MBRPart is a partition of an MBR disk, in logical sectors from the
// start of the disk.
type MBRPart struct {
	Type        byte // 0x05: the extended partition the logical ones are in
	Start, Size uint32
}

// MBR is a DOS-partitioned disk as fdisk writes one: the signature at
// 440, up to four primary entries (a zero one is unused), and for the
// logical partitions a chain of extended boot records in the primary
// entry of type 0x05, each record EBRGap sectors before its partition
// (the first at the start of the extended partition).
type MBR struct {
	Signature uint32
	Primaries []MBRPart
	Logicals  []MBRPart
}

// EBRGap is how far before its logical partition an extended boot record
// is: fdisk's 1 MiB alignment. Linux gives the extended partition 1 KiB,
// which a logical partition right after its record would overlap.
const EBRGap = 2048

// PutMBREntry writes entry i of the partition table in sector, an MBR or
// an extended boot record.
func PutMBREntry(sector []byte, i int, typ byte, start, size uint32) {
	e := sector[446+16*i:]
	e[4] = typ
	binary.LittleEndian.PutUint32(e[8:], start)
	binary.LittleEndian.PutUint32(e[12:], size)
}

// Image is the disk's bytes, for logical sectors of ss bytes.
func (d MBR) Image(ss int) []byte {
	end := Size
	for _, p := range append(append([]MBRPart{}, d.Primaries...), d.Logicals...) {
		end = max(end, int(p.Start+p.Size)*ss)
	}
	img := make([]byte, end)
	mbr := img[:512]
	binary.LittleEndian.PutUint32(mbr[440:], d.Signature)
	var ext uint32
	for i, p := range d.Primaries {
		PutMBREntry(mbr, i, p.Type, p.Start, p.Size)
		if p.Type == 0x05 {
			ext = p.Start
		}
	}
	mbr[510], mbr[511] = 0x55, 0xAA
	for i, l := range d.Logicals {
		ebr := int(l.Start-EBRGap) * ss
		s := img[ebr : ebr+512]
		PutMBREntry(s, 0, l.Type, EBRGap, l.Size) // relative to this record
		if i+1 < len(d.Logicals) {
			next := d.Logicals[i+1]
			PutMBREntry(s, 1, 0x05, next.Start-EBRGap-ext, next.Size+EBRGap) // relative to the extended partition
		}
		s[510], s[511] = 0x55, 0xAA
	}
	return img
}

// GPTPart is a partition of a GPT disk: its unique GUID as text, its
// name, its first and last logical sector.
type GPTPart struct {
	UUID        string
	Name        string
	First, Last uint64
}

// GUIDBytes is a GUID's text in GPT's on-disk order: the first three
// fields little endian.
func GUIDBytes(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		tb.Fatalf("GUID %q: %v", s, err)
	}
	for _, r := range [][2]int{{0, 4}, {4, 6}, {6, 8}} {
		for i, j := r[0], r[1]-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
	}
	return b
}

// GPT is a GPT disk of Size bytes as sgdisk writes one, for logical
// sectors of ss bytes: the protective MBR, the header at LBA 1 with 128
// entries from LBA 2, and their backup at the end of the disk, header
// last. The usable area is from 2+16384/ss to the backup entries.
func GPT(tb testing.TB, ss int, parts []GPTPart) []byte {
	tb.Helper()
	img := make([]byte, Size)
	last := uint64(len(img)/ss - 1)
	le := binary.LittleEndian
	PutMBREntry(img, 0, 0xEE, 1, uint32(min(last, 0xFFFFFFFF)))
	img[510], img[511] = 0x55, 0xAA

	ents := make([]byte, 128*128)
	for i, p := range parts {
		GPTEntry(tb, ents, i, p)
	}
	entSectors := uint64(len(ents) / ss)
	header := func(my, alt, entLBA uint64) []byte {
		h := GPTHeader(my, alt, entLBA, 2+entSectors, last-entSectors-1, ents)
		copy(h[56:], GUIDBytes(tb, "6a1c9e2f-3b4d-4e5f-8a9b-0c1d2e3f4a5b"))
		le.PutUint32(h[16:], 0)
		le.PutUint32(h[16:], crc32.ChecksumIEEE(h))
		return h
	}
	copy(img[ss:], header(1, last, 2))
	copy(img[2*ss:], ents)
	copy(img[int(last-entSectors)*ss:], ents)
	copy(img[int(last)*ss:], header(last, 1, last-entSectors))
	return img
}

// Write writes img to a file in tb's temporary directory.
func Write(tb testing.TB, img []byte) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "disk.img")
	if err := os.WriteFile(path, img, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

func tool(tb testing.TB, name string) string {
	tb.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name, "/sbin/" + name, "/usr/bin/" + name} {
		if bin, err := exec.LookPath(p); err == nil {
			return bin
		}
	}
	tb.Skipf("disktest: no %s (util-linux)", name)
	return ""
}

// Attach binds the disk image at path to a free loop device with
// logical sectors of ss bytes and adds its partitions (partx -a), as
// /dev/loopNpK: Part names them. They are removed and the device
// detached when tb ends. Skips tb outside fresh namespaces, or without
// losetup or partx.
func Attach(tb testing.TB, path string, ss int) string {
	tb.Helper()
	disk, err := Attacher(tb, path, ss)()
	if err != nil {
		tb.Fatal(err)
	}
	return disk
}

// Attacher is Attach to be run later, from any goroutine (a disk that
// shows up while the code under test waits for it): the function it
// returns reports what fails rather than failing tb. Skips tb, as
// Attach, at once.
func Attacher(tb testing.TB, path string, ss int) func() (string, error) {
	tb.Helper()
	isolated.Require(tb)
	losetup, partx := tool(tb, "losetup"), tool(tb, "partx")
	return func() (string, error) {
		// -P lets partitions be added to the device; a kernel without
		// partition parsers finds none by itself.
		out, err := exec.Command(losetup, "--find", "--show", "--partscan", "--sector-size", fmt.Sprint(ss), path).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("losetup %s: %w: %s", path, err, out)
		}
		disk := strings.TrimSpace(string(out))
		tb.Cleanup(func() {
			// The partitions first, which hold the loop device.
			if out, err := exec.Command(partx, "--delete", disk).CombinedOutput(); err != nil {
				tb.Errorf("partx --delete %s: %v: %s", disk, err, out)
			}
			if out, err := exec.Command(losetup, "--detach", disk).CombinedOutput(); err != nil {
				tb.Errorf("losetup --detach %s: %v: %s", disk, err, out)
			}
		})
		if out, err := exec.Command(partx, "--add", disk).CombinedOutput(); err != nil {
			return disk, fmt.Errorf("partx --add %s: %w: %s", disk, err, out)
		}
		return disk, nil
	}
}

// Part is the node of partition n of disk, a loop device.
func Part(disk string, n int) string {
	return fmt.Sprintf("%sp%d", disk, n)
}

// GPTEntry fills entry i of the entry array ents with p, a Linux
// filesystem partition.
func GPTEntry(tb testing.TB, ents []byte, i int, p GPTPart) {
	le := binary.LittleEndian
	e := ents[128*i:]
	copy(e, GUIDBytes(tb, "0fc63daf-8483-4772-8e79-3d69d8477de4"))
	copy(e[16:], GUIDBytes(tb, p.UUID))
	le.PutUint64(e[32:], p.First)
	le.PutUint64(e[40:], p.Last)
	for j, u := range utf16.Encode([]rune(p.Name)) {
		le.PutUint16(e[56+2*j:], u)
	}
}

// GPTHeader is a GPT header (92 bytes, its CRC set) at LBA my, its
// backup at alt, for the entry array ents at entLBA, with the usable
// area first..last.
func GPTHeader(my, alt, entLBA, first, last uint64, ents []byte) []byte {
	le := binary.LittleEndian
	h := make([]byte, 92)
	copy(h, "EFI PART")
	le.PutUint32(h[8:], 0x00010000)
	le.PutUint32(h[12:], 92)
	le.PutUint64(h[24:], my)
	le.PutUint64(h[32:], alt)
	le.PutUint64(h[40:], first)
	le.PutUint64(h[48:], last)
	le.PutUint64(h[72:], entLBA)
	le.PutUint32(h[80:], uint32(len(ents)/128))
	le.PutUint32(h[84:], 128)
	le.PutUint32(h[88:], crc32.ChecksumIEEE(ents))
	le.PutUint32(h[16:], crc32.ChecksumIEEE(h))
	return h
}

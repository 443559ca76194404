package blockdev

import (
	"bytes"
	"testing"

	"github.com/pantavisor/pv/internal/disktest"
)

// putGPTHeader writes at LBA my of img (512-byte sectors) a GPT
// header for the entry array ents, which it writes at entLBA, with the
// usable area first..last.
func putGPTHeader(img []byte, my, alt, entLBA, first, last uint64, ents []byte) {
	copy(img[my*512:], disktest.GPTHeader(my, alt, entLBA, first, last, ents))
	copy(img[entLBA*512:], ents)
}

// putGPTEntry fills entry i of ents: a Linux filesystem partition.
func putGPTEntry(tb testing.TB, ents []byte, i int, uuid, name string, first, last uint64) {
	disktest.GPTEntry(tb, ents, i, disktest.GPTPart{UUID: uuid, Name: name, First: first, Last: last})
}

// largePrimaryGPT is an 8 MiB GPT disk (512-byte sectors) whose primary
// header, valid, has 16384 entries (2 MiB, LBAs 2-4097: more than
// 1 MiB, less than gptMaxEntryBytes, the kernel's KMALLOC_MAX_SIZE, and nothing
// libblkid refuses), and whose backup, valid too, has the usual 128. Both
// describe partition 1 at LBAs 8192-9215, the primary as uuid/name, the
// backup as staleUUID/staleName: a backup left stale (a tool that
// rewrote the primary alone, or a disk made to fool the probe).
func largePrimaryGPT(tb testing.TB, uuid, name, staleUUID, staleName string) []byte {
	img := make([]byte, disktest.Size)
	last := uint64(len(img)/512 - 1)
	disktest.PutMBREntry(img, 0, 0xEE, 1, uint32(last))
	img[510], img[511] = 0x55, 0xAA
	big := make([]byte, 16384*128)
	putGPTEntry(tb, big, 0, uuid, name, 8192, 9215)
	small := make([]byte, 128*128)
	putGPTEntry(tb, small, 0, staleUUID, staleName, 8192, 9215)
	putGPTHeader(img, 1, last, 2, 4098, last-33, big)
	putGPTHeader(img, last, 1, last-32, 4098, last-33, small)
	return img
}

// partxThenParse reads the image at path with partx, which must find
// partition 1 named want, then with parseTable, which must find a table:
// what each read.
func partxThenParse(t *testing.T, path, want string) (map[uint64]partEntry, partTable) {
	t.Helper()
	ref, ok := partxSays(t, path)
	if !ok || ref[1].name != want {
		t.Fatalf("partx reads %+v, %v; the test expects partition 1 named %q", ref, ok, want)
	}
	pt, ok := parseImage(t, path, 512)
	if !ok {
		t.Fatalf("parseTable finds no table; partx reads %+v", ref)
	}
	return ref, pt
}

// A valid primary GPT with a large entry array (2 MiB) is read, as blkid
// (partx, udev's links) and the kernel's efi parser read it; its backup,
// which may say other things of the same partitions (stale, or made to
// fool the probe), is not: found by review, the array was refused over 1
// MiB as if its CRC had failed, and PARTLABEL=rootfs matched partition 1,
// which blkid and the kernel call "data".
func TestParseTableGPTLargePrimaryNotBackup(t *testing.T) {
	path := disktest.Write(t, largePrimaryGPT(t, "3f1c2b7e-0a4d-4c55-9e21-6b7f8a9c0d1e", "data",
		"5a6b7c8d-1e2f-4a5b-8c9d-0e1f2a3b4c5d", "rootfs"))
	ref, pt := partxThenParse(t, path, "data")
	checkAgainstPartx(t, path, pt)
	if e, ok := pt.find(1, 8192, 1024); ok && (tag{"PARTLABEL", "rootfs"}).matchesEntry(e) {
		t.Errorf("PARTLABEL=rootfs matches partition 1, which blkid names %q (PARTUUID %s)", ref[1].name, ref[1].uuid)
	}
}

// A GPT disk smaller than a floppy (1 MiB) is read, as blkid reads it
// (partx here, and blkid -p on a loop device of it).
func TestParseTableGPTSmallDisk(t *testing.T) {
	img := make([]byte, 1<<20)
	last := uint64(len(img)/512 - 1)
	disktest.PutMBREntry(img, 0, 0xEE, 1, uint32(last))
	img[510], img[511] = 0x55, 0xAA
	ents := make([]byte, 128*128)
	putGPTEntry(t, ents, 0, "3f1c2b7e-0a4d-4c55-9e21-6b7f8a9c0d1e", "tiny", 40, 100)
	putGPTHeader(img, 1, last, 2, 34, last-33, ents)
	putGPTHeader(img, last, 1, last-32, 34, last-33, ents)
	path := disktest.Write(t, img)
	_, pt := partxThenParse(t, path, "tiny")
	checkAgainstPartx(t, path, pt)
}

// A valid primary GPT whose entry array is beyond gptMaxEntryBytes (the
// kernel makes no partitions of it) is no table, and its backup is not
// read in its place: the backup may name the same partitions otherwise.
func TestParseTableGPTTooLargePrimaryNotBackup(t *testing.T) {
	img := make([]byte, 16<<20)
	last := uint64(len(img)/512 - 1)
	disktest.PutMBREntry(img, 0, 0xEE, 1, uint32(last))
	img[510], img[511] = 0x55, 0xAA
	n := gptMaxEntryBytes/128 + 1
	big := make([]byte, n*128)
	first := uint64(2 + len(big)/512 + 1)
	putGPTEntry(t, big, 0, "3f1c2b7e-0a4d-4c55-9e21-6b7f8a9c0d1e", "data", first+64, first+1087)
	small := make([]byte, 128*128)
	putGPTEntry(t, small, 0, "5a6b7c8d-1e2f-4a5b-8c9d-0e1f2a3b4c5d", "rootfs", first+64, first+1087)
	putGPTHeader(img, 1, last, 2, first, last-33, big)
	putGPTHeader(img, last, 1, last-32, first, last-33, small)
	r := &countingReader{r: bytes.NewReader(img)}
	if pt, ok := parseTable(r, 512, uint64(len(img))); ok {
		t.Errorf("parseTable = %+v, want no table", pt)
	}
	if r.n > 64<<10 {
		t.Errorf("read %d bytes of a table it does not take", r.n)
	}
}

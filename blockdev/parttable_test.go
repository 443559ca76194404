package blockdev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pantavisor/pv/internal/disktest"
)

// partxSays is the partition table util-linux's partx (libblkid, which
// udev's links come from) reads in the image at path, 512-byte sectors:
// the entries by number, with start and size in sectors; ok false
// without partx, or when partx finds no table.
func partxSays(t *testing.T, path string) (entries map[uint64]partEntry, ok bool) {
	t.Helper()
	bin, err := exec.LookPath("partx")
	if err != nil {
		if bin, err = exec.LookPath("/usr/bin/partx"); err != nil {
			t.Skip("no partx (util-linux)")
		}
	}
	out, err := exec.Command(bin, "--raw", "--noheadings", "-o", "NR,START,SECTORS,UUID,NAME", path).Output()
	if err != nil {
		return nil, false
	}
	entries = map[uint64]partEntry{}
	for _, l := range strings.Split(string(out), "\n") {
		if l == "" {
			continue
		}
		f := strings.Split(l, " ")
		if len(f) != 5 {
			t.Fatalf("partx: %q", l)
		}
		var e partEntry
		var errs [3]error
		e.num, errs[0] = strconv.ParseUint(f[0], 10, 64)
		e.start, errs[1] = strconv.ParseUint(f[1], 10, 64)
		e.size, errs[2] = strconv.ParseUint(f[2], 10, 64)
		if err := errors.Join(errs[:]...); err != nil {
			t.Fatalf("partx: %q: %v", l, err)
		}
		e.uuid, e.name = f[3], unescapeRaw(f[4])
		entries[e.num] = e
	}
	return entries, true
}

// unescapeRaw undoes the \xNN escapes of partx --raw.
func unescapeRaw(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseImage is parseTable on the image at path, read as a disk with
// sectors of ss bytes.
func parseImage(t *testing.T, path string, ss uint64) (partTable, bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return parseTable(f, ss, uint64(st.Size()))
}

// checkAgainstPartx compares pt with what partx reads in path: the same
// partitions, each with the same place, UUID and name.
func checkAgainstPartx(t *testing.T, path string, pt partTable) {
	t.Helper()
	ref, ok := partxSays(t, path)
	if !ok {
		t.Fatalf("partx finds no table in %s, parseTable %+v", path, pt)
	}
	if len(ref) != len(pt.entries) {
		t.Errorf("partx reads %d partitions %+v, parseTable %d %+v", len(ref), ref, len(pt.entries), pt.entries)
	}
	for _, e := range pt.entries {
		r := ref[e.num]
		if r.start != e.start || (r.size != e.size && !e.extended) || r.uuid != e.uuid || r.name != e.name {
			t.Errorf("partition %d: partx reads %+v, parseTable %+v", e.num, r, e)
		}
	}
}

func TestParseTableDOS(t *testing.T) {
	d := disktest.MBR{
		Signature: 0x5AF3C01D,
		Primaries: []disktest.MBRPart{
			{Type: 0x83, Start: 2048, Size: 4096},
			{Type: 0x05, Start: 6144, Size: 8192}, // extended: 5 and 6 in it
			{}, {Type: 0x0C, Start: 14336, Size: 2048},
		},
		Logicals: []disktest.MBRPart{{Type: 0x83, Start: 8192, Size: 2048}, {Type: 0x83, Start: 12288, Size: 2048}},
	}
	path := disktest.Write(t, d.Image(512))
	pt, ok := parseImage(t, path, 512)
	if !ok || pt.scheme != "dos" {
		t.Fatalf("parseTable = %+v, %v; want a dos table", pt, ok)
	}
	want := []partEntry{
		{num: 1, start: 2048, size: 4096, uuid: "5af3c01d-01"},
		{num: 2, start: 6144, size: 8192, extended: true, uuid: "5af3c01d-02"},
		{num: 4, start: 14336, size: 2048, uuid: "5af3c01d-04"},
		{num: 5, start: 8192, size: 2048, uuid: "5af3c01d-05"},
		{num: 6, start: 12288, size: 2048, uuid: "5af3c01d-06"},
	}
	if len(pt.entries) != len(want) {
		t.Fatalf("entries %+v, want %+v", pt.entries, want)
	}
	for i := range want {
		if pt.entries[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, pt.entries[i], want[i])
		}
	}
	checkAgainstPartx(t, path, pt)

	// Found where sysfs puts the partition; the extended one with the
	// 1 KiB Linux gives it.
	if e, ok := pt.find(5, 8192, 2048); !ok || e.uuid != "5af3c01d-05" {
		t.Errorf("find(5) = %+v, %v", e, ok)
	}
	if e, ok := pt.find(2, 6144, 2); !ok || e.uuid != "5af3c01d-02" {
		t.Errorf("find(2, extended) = %+v, %v", e, ok)
	}
	for _, c := range [][3]uint64{{1, 2048, 4095}, {1, 2049, 4096}, {3, 2048, 4096}, {5, 12288, 2048}} {
		if e, ok := pt.find(c[0], c[1], c[2]); ok {
			t.Errorf("find%v = %+v: a partition the table does not have there", c, e)
		}
	}

	// No signature, no PARTUUID, as blkid.
	d.Signature = 0
	pt, ok = parseImage(t, disktest.Write(t, d.Image(512)), 512)
	if !ok || pt.entries[0].uuid != "" {
		t.Errorf("signature 0: %+v, %v; want a table without PARTUUIDs", pt, ok)
	}

	// 4 KiB sectors: the table counts in them, sysfs in 512 bytes.
	d.Signature = 0x01020304
	img := d.Image(4096)
	pt, ok = parseTable(bytes.NewReader(img), 4096, uint64(len(img)))
	if e, found := pt.find(5, 8192*8, 2048*8); !ok || !found || e.uuid != "01020304-05" {
		t.Errorf("4 KiB sectors: find(5) = %+v, %v in %+v", e, found, pt)
	}
}

// Things that look like a DOS table and are not one.
func TestParseTableNotDOS(t *testing.T) {
	d := disktest.MBR{Signature: 1, Primaries: []disktest.MBRPart{{Type: 0x83, Start: 2048, Size: 4096}}}
	badBoot := d.Image(512)
	badBoot[446] = 0x12
	noMagic := d.Image(512)
	noMagic[511] = 0
	fat := make([]byte, disktest.Size)
	copy(fat, fatBootSector(false, "BOOT", 1))
	for name, img := range map[string][]byte{"boot indicator": badBoot, "no 0x55aa": noMagic, "fat": fat, "empty": nil} {
		if pt, ok := parseTable(bytes.NewReader(img), 512, uint64(len(img))); ok {
			t.Errorf("%s: parseTable = %+v, want no table", name, pt)
		}
	}
	// An extended boot record chain that loops on itself ends.
	loop := disktest.MBR{Signature: 1, Primaries: []disktest.MBRPart{{Type: 0x05, Start: 2048, Size: 8192}}, Logicals: []disktest.MBRPart{{Type: 0x83, Start: 4096, Size: 100}}}.Image(512)
	disktest.PutMBREntry(loop[2048*512:], 1, 0x05, 0, 8192)
	pt, ok := parseTable(bytes.NewReader(loop), 512, uint64(len(loop)))
	if !ok || len(pt.entries) > 1+mbrMaxLogicals {
		t.Errorf("looping chain: %d entries, %v", len(pt.entries), ok)
	}
}

func TestParseTableGPT(t *testing.T) {
	parts := []disktest.GPTPart{
		{UUID: "3f1c2b7e-0a4d-4c55-9e21-6b7f8a9c0d1e", Name: "pv-storage", First: 34, Last: 2081},
		{UUID: "C0FFEE00-1234-4ABC-8DEF-001122334455", Name: "données €  ", First: 2082, Last: 4129}, // trailing blanks trimmed, as blkid
		{UUID: "5a6b7c8d-1e2f-4a5b-8c9d-0e1f2a3b4c5d", Name: strings.Repeat("x", 36), First: 4130, Last: 8000},
	}
	want := []partEntry{
		{num: 1, start: 34, size: 2048, uuid: "3f1c2b7e-0a4d-4c55-9e21-6b7f8a9c0d1e", name: "pv-storage"},
		{num: 2, start: 2082, size: 2048, uuid: "c0ffee00-1234-4abc-8def-001122334455", name: "données €"},
		{num: 3, start: 4130, size: 3871, uuid: "5a6b7c8d-1e2f-4a5b-8c9d-0e1f2a3b4c5d", name: strings.Repeat("x", 36)},
	}
	img := disktest.GPT(t, 512, parts)
	path := disktest.Write(t, img)
	pt, ok := parseImage(t, path, 512)
	if !ok || pt.scheme != "gpt" || len(pt.entries) != len(want) {
		t.Fatalf("parseTable = %+v, %v; want a gpt table of %d", pt, ok, len(want))
	}
	for i := range want {
		if pt.entries[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, pt.entries[i], want[i])
		}
	}
	checkAgainstPartx(t, path, pt)

	// 4 KiB sectors: the header at 4096, the places in 512 bytes.
	pt, ok = parseTable(bytes.NewReader(disktest.GPT(t, 4096, []disktest.GPTPart{{UUID: parts[0].UUID, Name: "a", First: 6, Last: 1029}})), 4096, disktest.Size)
	if !ok || len(pt.entries) != 1 || pt.entries[0].start != 6*8 || pt.entries[0].size != 1024*8 {
		t.Errorf("4 KiB sectors: %+v, %v", pt, ok)
	}
	// Read with the wrong sector size, there is no header where it looks.
	if pt, ok := parseTable(bytes.NewReader(img), 4096, disktest.Size); ok {
		t.Errorf("512-byte GPT read as 4 KiB: %+v", pt)
	}
}

// A damaged primary GPT falls back on the backup, as blkid and the
// kernel; with both damaged there is no table, and no name comes from
// either.
func TestParseTableGPTCorrupt(t *testing.T) {
	parts := []disktest.GPTPart{{UUID: "3f1c2b7e-0a4d-4c55-9e21-6b7f8a9c0d1e", Name: "pv-storage", First: 34, Last: 2081}}
	lastLBA := disktest.Size/512 - 1
	tests := []struct {
		name     string
		damage   func(img []byte)
		fallback bool // the backup is used; otherwise no table
	}{
		{"primary header", func(img []byte) { img[512+60] ^= 1 }, true},    // in the disk GUID, under the CRC
		{"primary entries", func(img []byte) { img[2*512+56] ^= 1 }, true}, // a name
		{"primary signature", func(img []byte) { copy(img[512:], "EFI TRAP") }, true},
		{"both headers", func(img []byte) { img[512+60] ^= 1; img[lastLBA*512+60] ^= 1 }, false},
		{"primary header, backup entries", func(img []byte) {
			img[512+60] ^= 1
			img[(lastLBA-32)*512+56] ^= 1
		}, false},
		{"protective MBR", func(img []byte) { img[446+4] = 0x83; img[446] = 0x77 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := disktest.GPT(t, 512, parts)
			tt.damage(img)
			path := disktest.Write(t, img)
			pt, ok := parseImage(t, path, 512)
			if !tt.fallback {
				if ok && pt.scheme == "gpt" || len(pt.entries) > 0 {
					t.Fatalf("parseTable = %+v, %v; want no table", pt, ok)
				}
				if ref, ok := partxSays(t, path); ok && len(ref) > 0 {
					t.Errorf("partx reads %+v where parseTable reads none", ref)
				}
				return
			}
			if !ok || len(pt.entries) != 1 || pt.entries[0].name != "pv-storage" {
				t.Fatalf("parseTable = %+v, %v; want the backup's entry", pt, ok)
			}
			checkAgainstPartx(t, path, pt)
		})
	}
}

// countingReader counts the bytes read of it: a corrupt table must not
// make a probe read much.
type countingReader struct {
	r io.ReaderAt
	n int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.n += int64(len(p))
	return c.r.ReadAt(p, off)
}

// A header whose CRC holds and that claims a huge entry array is
// refused without reading it.
func TestParseTableGPTBounded(t *testing.T) {
	for _, count := range []uint32{1 << 20, 0xFFFFFFFF} {
		img := disktest.GPT(t, 512, nil)
		le := binary.LittleEndian
		h := img[512 : 512+92]
		le.PutUint32(h[80:], count)
		le.PutUint32(h[16:], 0)
		le.PutUint32(h[16:], crc32.ChecksumIEEE(h))
		r := &countingReader{r: bytes.NewReader(img)}
		if pt, ok := parseTable(r, 512, disktest.Size); ok && len(pt.entries) > 0 {
			t.Errorf("%d entries: parseTable = %+v", count, pt)
		}
		if r.n > 2*gptMaxEntryBytes {
			t.Errorf("%d entries: read %d bytes", count, r.n)
		}
	}
}

// zeroDisk is a disk of size bytes whose first ones are head, the rest
// zeros: a fuzzed table on a disk large enough for a GPT, without
// fuzzing megabytes. It counts the bytes read.
type zeroDisk struct {
	head []byte
	size uint64
	read uint64
}

func (z *zeroDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || uint64(off) >= z.size {
		return 0, io.EOF
	}
	z.read += uint64(len(p))
	n := len(p)
	if rest := z.size - uint64(off); uint64(n) > rest {
		n = int(rest)
	}
	clear(p[:n])
	if uint64(off) < uint64(len(z.head)) {
		copy(p[:n], z.head[off:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

var (
	dosPartUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{2,}$`)
	gptPartUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// FuzzParseTable: no table makes parseTable panic or read more than its
// bounds, and what it reports is in the forms blkid prints.
func FuzzParseTable(f *testing.F) {
	d := disktest.MBR{Signature: 0x5AF3C01D, Primaries: []disktest.MBRPart{{Type: 0x83, Start: 2048, Size: 4096}, {Type: 0x05, Start: 6144, Size: 8192}},
		Logicals: []disktest.MBRPart{{Type: 0x83, Start: 8192, Size: 2048}, {Type: 0x83, Start: 12288, Size: 2048}}}
	f.Add(d.Image(512)[:10241*512], uint8(0), uint64(disktest.Size))
	gpt := disktest.GPT(f, 512, []disktest.GPTPart{{UUID: "3f1c2b7e-0a4d-4c55-9e21-6b7f8a9c0d1e", Name: "pv-storage", First: 34, Last: 2081}})
	f.Add(gpt[:34*512], uint8(0), uint64(disktest.Size))
	f.Add(disktest.GPT(f, 4096, nil)[:6*4096], uint8(3), uint64(disktest.Size))
	f.Add([]byte{}, uint8(0), uint64(0))
	f.Fuzz(func(t *testing.T, head []byte, shift uint8, size uint64) {
		z := &zeroDisk{head: head, size: size}
		ss := uint64(512) << (shift % 8)
		pt, ok := parseTable(z, ss, size)
		if z.read > 4<<20 {
			t.Fatalf("read %d bytes", z.read)
		}
		if !ok {
			if pt.scheme != "" || len(pt.entries) > 0 {
				t.Fatalf("no table but %+v reported", pt)
			}
			return
		}
		for _, e := range pt.entries {
			if e.num == 0 || e.num > 1+4+mbrMaxLogicals && pt.scheme == "dos" {
				t.Fatalf("partition number %d", e.num)
			}
			switch {
			case e.uuid == "":
			case pt.scheme == "dos" && !dosPartUUID.MatchString(e.uuid),
				pt.scheme == "gpt" && !gptPartUUID.MatchString(e.uuid):
				t.Fatalf("%s PARTUUID %q not in blkid's form", pt.scheme, e.uuid)
			}
			if !utf8.ValidString(e.name) || utf8.RuneCountInString(e.name) > gptNameLen || pt.scheme == "dos" && e.name != "" {
				t.Fatalf("%s PARTLABEL %q", pt.scheme, e.name)
			}
		}
	})
}

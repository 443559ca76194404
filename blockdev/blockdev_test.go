package blockdev

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf16"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec    string
		want    tag
		isTag   bool
		wantErr string
	}{
		{"/dev/mmcblk0p2", tag{}, false, ""},
		{"", tag{}, false, ""},
		{"LABEL=root", tag{"LABEL", "root"}, true, ""},
		{`LABEL="pv data"`, tag{"LABEL", "pv data"}, true, ""},
		{"LABEL='x'", tag{"LABEL", "x"}, true, ""},
		{"LABEL=a=b", tag{"LABEL", "a=b"}, true, ""},
		{"UUID=0A1B-2C3D", tag{"UUID", "0A1B-2C3D"}, true, ""},
		{"LABEL=", tag{}, false, "LABEL=: empty LABEL"},
		{`UUID=""`, tag{}, false, `UUID="": empty UUID`},
		{"PARTUUID=5af3c01d-01", tag{"PARTUUID", "5af3c01d-01"}, true, ""},
		{"PARTLABEL=pv storage", tag{"PARTLABEL", "pv storage"}, true, ""},
		{`PARTLABEL="pv storage"`, tag{"PARTLABEL", "pv storage"}, true, ""},
		{"PARTLABEL=", tag{}, false, "PARTLABEL=: empty PARTLABEL"},
		{"PARTUUID=5af3c01d-01/PARTNROFF=1", tag{}, false, "PARTUUID=5af3c01d-01/PARTNROFF=1: a PARTUUID has no"},
		{"label=root", tag{}, false, ""}, // blkid's tags are upper case
		{"/dev/disk/by-label/x=y", tag{}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, isTag, err := parseSpec(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseSpec(%q) err = %v, want one containing %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want || isTag != tt.isTag {
				t.Fatalf("parseSpec(%q) = %+v, %v, %v; want %+v, %v", tt.spec, got, isTag, err, tt.want, tt.isTag)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	in := Info{Type: "vfat", Label: "BOOT", UUID: "0A1B-2C3D"}
	tests := []struct {
		t    tag
		want bool
	}{
		{tag{"LABEL", "BOOT"}, true},
		{tag{"LABEL", "boot"}, false}, // labels are exact, as in blkid
		{tag{"UUID", "0a1b-2c3d"}, true},
		{tag{"UUID", "0A1B-2C3E"}, false},
	}
	for _, tt := range tests {
		if got := tt.t.matches(in); got != tt.want {
			t.Errorf("%+v.matches(%+v) = %v, want %v", tt.t, in, got, tt.want)
		}
	}
	if (tag{"LABEL", ""}).matches(Info{Type: "ext4"}) {
		t.Error("an empty label matched a filesystem without one")
	}
	if (tag{"PARTUUID", "0A1B-2C3D"}).matches(in) {
		t.Error("a PARTUUID matched a filesystem's UUID")
	}
}

func TestMatchesEntry(t *testing.T) {
	e := partEntry{num: 1, uuid: "c0ffee00-1234-4abc-8def-001122334455", name: "pv-storage"}
	tests := []struct {
		t    tag
		want bool
	}{
		{tag{"PARTUUID", "c0ffee00-1234-4abc-8def-001122334455"}, true},
		{tag{"PARTUUID", "C0FFEE00-1234-4ABC-8DEF-001122334455"}, true}, // as the kernel's root=
		{tag{"PARTUUID", "c0ffee00-1234-4abc-8def-00112233445"}, false},
		{tag{"PARTLABEL", "pv-storage"}, true},
		{tag{"PARTLABEL", "PV-STORAGE"}, false}, // exact, as blkid
		{tag{"UUID", "c0ffee00-1234-4abc-8def-001122334455"}, false},
		{tag{"LABEL", "pv-storage"}, false},
	}
	for _, tt := range tests {
		if got := tt.t.matchesEntry(e); got != tt.want {
			t.Errorf("%+v.matchesEntry(%+v) = %v, want %v", tt.t, e, got, tt.want)
		}
	}
	if (tag{"PARTLABEL", ""}).matchesEntry(partEntry{num: 1}) || (tag{"PARTUUID", ""}).matchesEntry(partEntry{num: 1}) {
		t.Error("an empty tag matched an entry without a name or UUID")
	}
}

func TestUdevEncode(t *testing.T) {
	tests := []struct{ in, want string }{
		{"root", "root"},
		{"pv data", `pv\x20data`},
		{"a/b", `a\x2fb`},
		{`a\b`, `a\x5cb`},
		{"x#+-.:=@_", "x#+-.:=@_"},
		{"données", "données"},
		{"\xff", `\xff`},
	}
	for _, tt := range tests {
		if got := udevEncode(tt.in); got != tt.want {
			t.Errorf("udevEncode(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// probeFile probes the image at path.
func probeFile(t testing.TB, path string) (Info, bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return probe(f)
}

// blkidSays is what util-linux's blkid reads in path (TYPE, LABEL, UUID),
// the reference this package follows, or ok false without blkid. A FAT's
// boot sector label, blkid's LABEL_FATBOOT, stands for a LABEL blkid
// does not find in the root directory, as probe takes it.
func blkidSays(t *testing.T, path string) (Info, bool) {
	t.Helper()
	bin, err := exec.LookPath("blkid")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/blkid"); err != nil {
			return Info{}, false
		}
	}
	out, err := exec.Command(bin, "-p", "-o", "export", path).Output()
	if err != nil {
		t.Fatalf("blkid -p %s: %v", path, err)
	}
	var in Info
	var fatBoot string
	for _, l := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(l, "=")
		switch k {
		case "TYPE":
			in.Type = v
		case "LABEL":
			in.Label = v
		case "UUID":
			in.UUID = v
		case "LABEL_FATBOOT":
			fatBoot = v
		}
	}
	if in.Label == "" {
		in.Label = fatBoot
	}
	return in, true
}

func TestProbeExt(t *testing.T) {
	tests := []struct {
		mkfs, label, uuid, want string
	}{
		{"mkfs.ext2", "pv-ext2", "3f1c2b7e-0a4d-4c55-9e21-6b7f8a9c0d1e", "ext2"},
		{"mkfs.ext3", "pv-ext3", "5A6B7C8D-1E2F-4a5b-8c9d-0E1F2A3B4C5D", "ext3"},
		{"mkfs.ext4", "sixteen-chars-lb", "c0ffee00-1234-4abc-8def-001122334455", "ext4"},
	}
	for _, tt := range tests {
		t.Run(tt.mkfs, func(t *testing.T) {
			mkfs := filepath.Join("/usr/sbin", tt.mkfs)
			if _, err := os.Stat(mkfs); err != nil {
				t.Skipf("%s: %v", mkfs, err)
			}
			img := filepath.Join(t.TempDir(), "fs.img")
			if out, err := exec.Command(mkfs, "-q", "-F", "-L", tt.label, "-U", tt.uuid, img, "2M").CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", tt.mkfs, err, out)
			}
			want := Info{Type: tt.want, Label: tt.label, UUID: strings.ToLower(tt.uuid)}
			got, ok := probeFile(t, img)
			if !ok || got != want {
				t.Fatalf("probe(%s image) = %+v, %v; want %+v", tt.mkfs, got, ok, want)
			}
			if ref, ok := blkidSays(t, img); ok && ref != got {
				t.Errorf("blkid reads %+v, probe %+v", ref, got)
			}
			if !(tag{"UUID", strings.ToUpper(tt.uuid)}).matches(got) || !(tag{"LABEL", tt.label}).matches(got) {
				t.Errorf("%+v does not match its own label and upper-case UUID", got)
			}
		})
	}
}

// fatBootSector lays out a FAT boot sector as mkfs.fat writes one: the
// BIOS parameter block, the extended one (boot signature 0x29, volume id,
// 11-byte label, 8-byte type) at 0x24 for FAT12/16 or 0x40 for FAT32,
// and 0x55AA at 510. The geometry is a 32 MiB FAT16 (root directory at
// sector 1+2*64) or a 512 MiB FAT32 (4 KiB clusters, cluster 2 at
// sector 32+2*1024).
func fatBootSector(fat32 bool, label string, id uint32) []byte {
	b := make([]byte, 512)
	le := binary.LittleEndian
	copy(b, []byte{0xEB, 0x3C, 0x90})
	copy(b[3:], "mkfs.fat")
	le.PutUint16(b[0x0B:], 512) // bytes per sector
	b[0x10] = 2                 // FATs
	b[0x15] = 0xF8              // media: fixed disk
	le.PutUint16(b[0x18:], 32)  // sectors per track
	le.PutUint16(b[0x1A:], 64)  // heads
	ebpb, fsType := 0x24, "FAT16   "
	if fat32 {
		b[0x0D] = 8                   // sectors per cluster
		le.PutUint16(b[0x0E:], 32)    // reserved sectors
		le.PutUint32(b[0x20:], 1<<20) // total sectors
		le.PutUint32(b[0x24:], 1024)  // sectors per FAT
		le.PutUint32(b[0x2C:], 2)     // root directory cluster
		le.PutUint16(b[0x30:], 1)     // FSInfo sector
		le.PutUint16(b[0x32:], 6)     // backup boot sector
		ebpb, fsType = 0x40, "FAT32   "
	} else {
		b[0x0D] = 4                   // sectors per cluster
		le.PutUint16(b[0x0E:], 1)     // reserved sectors
		le.PutUint16(b[0x11:], 512)   // root directory entries
		le.PutUint32(b[0x20:], 1<<16) // total sectors
		le.PutUint16(b[0x16:], 64)    // sectors per FAT
	}
	b[ebpb] = 0x80   // drive number
	b[ebpb+2] = 0x29 // extended boot signature
	le.PutUint32(b[ebpb+3:], id)
	copy(b[ebpb+7:ebpb+18], (label + "           ")[:11])
	copy(b[ebpb+18:ebpb+26], fsType)
	b[510], b[511] = 0x55, 0xAA
	return b
}

// dirEntry is a 32-byte FAT directory entry.
func dirEntry(name string, attr byte, cluster uint16) []byte {
	e := make([]byte, 32)
	copy(e, (name + "           ")[:11])
	e[11] = attr
	binary.LittleEndian.PutUint16(e[26:], cluster)
	return e
}

var (
	deleted  = append([]byte{0xE5}, dirEntry("OLDLABEL", 0x08, 0)[1:]...)
	longName = dirEntry("Ax", 0x0F, 0)
	file     = dirEntry("README  TXT", 0x20, 5)
	subdir   = dirEntry("LABELDIR", 0x18, 0) // volume id and directory bits: not a label
)

// fatVolume is a FAT image: its boot sector and the entries of its root
// directory; on FAT32, next holds those of a second cluster the FAT
// chains to the first.
type fatVolume struct {
	sector    []byte
	root      [][]byte
	next      [][]byte
	nextChain bool
}

// write makes the image, a sparse file the size of its geometry (blkid
// checks the geometry against the file), and returns its path.
func (v fatVolume) write(t *testing.T) string {
	t.Helper()
	le := binary.LittleEndian
	img := filepath.Join(t.TempDir(), "fat.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	at := func(b []byte, off int64) {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	at(v.sector, 0)
	fat32 := le.Uint16(v.sector[0x16:]) == 0
	rootOff, cluster := int64(129*512), int64(0)
	if fat32 {
		rootOff, cluster = (32+2048)*512, 4096
		fat := make([]byte, 16)
		le.PutUint32(fat[0:], 0x0FFFFFF8)
		le.PutUint32(fat[4:], 0x0FFFFFFF)
		le.PutUint32(fat[8:], 0x0FFFFFFF) // cluster 2, the root directory: its last
		if v.next != nil {
			le.PutUint32(fat[8:], 3)
			le.PutUint32(fat[12:], 0x0FFFFFFF)
		}
		at(fat, 32*512)
	}
	for i, e := range v.root {
		at(e, rootOff+int64(32*i))
	}
	for i, e := range v.next {
		at(e, rootOff+cluster+int64(32*i))
	}
	if err := f.Truncate(int64(le.Uint32(v.sector[0x20:])) * 512); err != nil {
		t.Fatal(err)
	}
	return img
}

// fill is a cluster's worth (4 KiB) of entries e.
func fill(e []byte) [][]byte {
	out := make([][]byte, 4096/32)
	for i := range out {
		out[i] = e
	}
	return out
}

func TestProbeFAT(t *testing.T) {
	tests := []struct {
		name string
		vol  fatVolume
		want Info
	}{
		{"fat16 as mkfs.fat", fatVolume{sector: fatBootSector(false, "BOOT", 0x0A1B2C3D),
			root: [][]byte{dirEntry("BOOT", 0x08, 0)}}, Info{"vfat", "BOOT", "0A1B-2C3D"}},
		{"fat32 as mkfs.fat", fatVolume{sector: fatBootSector(true, "PVSTORAGE", 0xDEADBEEF),
			root: [][]byte{dirEntry("PVSTORAGE", 0x08, 0)}}, Info{"vfat", "PVSTORAGE", "DEAD-BEEF"}},
		{"fat32 eleven characters", fatVolume{sector: fatBootSector(true, "ELEVENCHARS", 1),
			root: [][]byte{dirEntry("ELEVENCHARS", 0x28, 0)}}, Info{"vfat", "ELEVENCHARS", "0000-0001"}},
		// Windows relabels the root directory only: that label is the one.
		{"fat16 relabelled", fatVolume{sector: fatBootSector(false, "OLD", 0x12345678),
			root: [][]byte{longName, file, subdir, deleted, dirEntry("NEW", 0x08, 0)}}, Info{"vfat", "NEW", "1234-5678"}},
		{"fat32 label in second cluster", fatVolume{sector: fatBootSector(true, "OLD", 0x12345678),
			root: fill(deleted), next: [][]byte{file, dirEntry("NEXT", 0x08, 0)}}, Info{"vfat", "NEXT", "1234-5678"}},
		{"fat16 label after the end", fatVolume{sector: fatBootSector(false, "BOOT", 1),
			root: [][]byte{file, make([]byte, 32), dirEntry("LOST", 0x08, 0)}}, Info{"vfat", "BOOT", "0000-0001"}},
		{"fat16 boot sector only", fatVolume{sector: fatBootSector(false, "BOOT", 0x0A1B2C3D)},
			Info{"vfat", "BOOT", "0A1B-2C3D"}},
		{"fat32 no name", fatVolume{sector: fatBootSector(true, "NO NAME", 0x12345678)}, Info{"vfat", "", "1234-5678"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := tt.vol.write(t)
			got, ok := probeFile(t, img)
			if !ok || got != tt.want {
				t.Fatalf("probe = %+v, %v; want %+v", got, ok, tt.want)
			}
			if ref, ok := blkidSays(t, img); ok && ref != got {
				t.Errorf("blkid reads %+v, probe %+v", ref, got)
			}
		})
	}
}

func TestProbeRefuses(t *testing.T) {
	mbr := make([]byte, probeSize)
	mbr[510], mbr[511] = 0x55, 0xAA
	badBPS := fatBootSector(true, "X", 1)
	binary.LittleEndian.PutUint16(badBPS[0x0B:], 500)
	noType := fatBootSector(false, "X", 1)
	copy(noType[0x36:], "NTFS    ")
	noSig := fatBootSector(true, "X", 1)
	noSig[511] = 0
	// A GPT whose first partition name puts 0xEF53 where ext's magic is,
	// with attributes where the block size would be.
	gpt := make([]byte, probeSize)
	binary.LittleEndian.PutUint16(gpt[1024+56:], 0xEF53)
	binary.LittleEndian.PutUint32(gpt[1024+24:], 0xFFFFFFFF)
	tests := []struct {
		name string
		b    []byte
	}{
		{"zeros", make([]byte, probeSize)},
		{"empty", nil},
		{"mbr", mbr},
		{"fat bad sector size", badBPS},
		{"fat without type", noType},
		{"fat without 0x55aa", noSig},
		{"gpt name", gpt},
		{"truncated ext", []byte(strings.Repeat("\x00", 1024+56) + "\x53\xEF")},
	}
	for _, tt := range tests {
		if in, ok := probe(bytes.NewReader(tt.b)); ok {
			t.Errorf("%s: probe = %+v, want nothing", tt.name, in)
		}
	}
}

// f2fsHead lays out the start of an f2fs device: the superblock at 1024
// with its magic, the UUID at 108 and the UTF-16LE volume name at 124.
func f2fsHead(label string, uuid []byte) []byte {
	b := make([]byte, probeSize)
	sb := b[1024:]
	binary.LittleEndian.PutUint32(sb, 0xF2F52010)
	copy(sb[108:], uuid)
	for i, u := range utf16.Encode([]rune(label)) {
		binary.LittleEndian.PutUint16(sb[124+2*i:], u)
	}
	return b
}

func TestProbeF2FS(t *testing.T) {
	uuid := []byte{0x7d, 0x2a, 0x10, 0x9c, 0x33, 0x41, 0x4e, 0x0b, 0x9a, 0x55, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06}
	got, ok := probe(bytes.NewReader(f2fsHead("données €", uuid)))
	want := Info{Type: "f2fs", Label: "données €", UUID: "7d2a109c-3341-4e0b-9a55-010203040506"}
	if !ok || got != want {
		t.Fatalf("probe = %+v, %v; want %+v", got, ok, want)
	}
	full := strings.Repeat("x", 512) // a name filling all 512 units has no NUL
	if got, ok := probe(bytes.NewReader(f2fsHead(full, uuid))); !ok || got.Label != full {
		t.Errorf("512-unit name: probe = %q, %v", got.Label, ok)
	}
}

var uuidForm = regexp.MustCompile(`^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9A-F]{4}-[0-9A-F]{4})$`)

// FuzzProbe: no input makes probe panic, and what it reports is in the
// forms blkid prints.
func FuzzProbe(f *testing.F) {
	f.Add(fatBootSector(false, "BOOT", 0x0A1B2C3D))
	f.Add(fatBootSector(true, "PVSTORAGE", 0xDEADBEEF))
	f.Add(f2fsHead("root", bytes.Repeat([]byte{0xab}, 16)))
	ext := make([]byte, probeSize)
	binary.LittleEndian.PutUint16(ext[1024+56:], 0xEF53)
	copy(ext[1024+104:], bytes.Repeat([]byte{0x11}, 16))
	copy(ext[1024+120:], "root")
	f.Add(ext)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		in, ok := probe(bytes.NewReader(b))
		if !ok {
			if in != (Info{}) {
				t.Fatalf("nothing found but %+v reported", in)
			}
			return
		}
		if in.Type == "" {
			t.Fatalf("%+v: no type", in)
		}
		if in.UUID != "" && !uuidForm.MatchString(in.UUID) {
			t.Fatalf("UUID %q not in blkid's form", in.UUID)
		}
	})
}

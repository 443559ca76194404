package blockdev

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/internal/disktest"
)

func TestResolvePathAsIs(t *testing.T) {
	for _, spec := range []string{"/dev/mmcblk0p2", "/no/such/device"} {
		if got, _, err := Resolve(spec); err != nil || got != spec {
			t.Errorf("Resolve(%q) = %q, %v; want it unchanged", spec, got, err)
		}
	}
	// A tag no device can carry is refused, not waited for.
	if _, _, err := Resolve("PARTUUID=00112233-01/PARTNROFF=1"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(PARTUUID=…/PARTNROFF=1) = %v, want a refusal that is not ErrNotFound", err)
	}
}

// badSectors is a disk, r, whose reads fail with EIO at the bytes bad,
// as a failing disk's do at its bad sectors: a read over one returns
// what lies before it, as fdReader does.
type badSectors struct {
	r   io.ReaderAt
	bad []int64
}

func (d badSectors) ReadAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	first := end
	for _, b := range d.bad {
		if b >= off && b < first {
			first = b
		}
	}
	if first == end {
		return d.r.ReadAt(p, off)
	}
	n, _ := d.r.ReadAt(p[:first-off], off)
	return n, unix.EIO
}

// faultCase is a device and where it fails: found is whether the parser
// still finds something on what can be read, fault whether faultLog
// reports the device's failure.
type faultCase struct {
	name         string
	r            io.ReaderAt
	found, fault bool
}

// checkFaults checks that faultLog reports the device's failure, and
// only that (not a read at its end), without changing what parse finds.
func checkFaults[T any](t *testing.T, cases []faultCase, parse func(io.ReaderAt) (T, bool)) {
	t.Helper()
	for _, c := range cases {
		l := &faultLog{r: c.r}
		got, ok := parse(l)
		want, wantOK := parse(c.r)
		if !reflect.DeepEqual(got, want) || ok != wantOK {
			t.Errorf("%s: through faultLog %+v, %v; without %+v, %v", c.name, got, ok, want, wantOK)
		}
		if ok != c.found {
			t.Errorf("%s: found %v, want %v", c.name, ok, c.found)
		}
		var wantFault error
		if c.fault {
			wantFault = unix.EIO
		}
		if !errors.Is(l.fault, wantFault) {
			t.Errorf("%s: fault %v, want %v", c.name, l.fault, wantFault)
		}
	}
}

// A filesystem probe of a device that fails a read reports it, whether
// the failure hides the filesystem or only its label's root directory.
func TestProbeFault(t *testing.T) {
	f2fs := f2fsHead("root", bytes.Repeat([]byte{0xab}, 16))
	fat, err := os.Open(fatVolume{sector: fatBootSector(false, "BOOT", 1), root: [][]byte{dirEntry("ROOT", 0x08, 0)}}.write(t))
	if err != nil {
		t.Fatal(err)
	}
	defer fat.Close()
	checkFaults(t, []faultCase{
		{"superblock", badSectors{bytes.NewReader(f2fs), []int64{1024}}, false, true},
		{"first sector", badSectors{bytes.NewReader(f2fs), []int64{0}}, false, true},
		{"fat root directory", badSectors{fat, []int64{129 * 512}}, true, true},
		{"beyond what is read", badSectors{fat, []int64{1 << 20}}, true, false},
		{"short device", bytes.NewReader(f2fs[:2000]), false, false},
		{"fat on a device ending before its root directory", bytes.NewReader(fatBootSector(false, "BOOT", 1)), true, false},
	}, probe)
}

// A partition table read from a disk that fails a read reports it:
// the MBR, an extended boot record, the GPT's header or its entry array.
func TestParseTableFault(t *testing.T) {
	dos := disktest.MBR{
		Signature: 0x5AF3C01D,
		Primaries: []disktest.MBRPart{{Type: 0x83, Start: 2048, Size: 4096}, {Type: 0x05, Start: 6144, Size: 8192}},
		Logicals:  []disktest.MBRPart{{Type: 0x83, Start: 8192, Size: 2048}, {Type: 0x83, Start: 12288, Size: 2048}},
	}.Image(512)
	gpt := disktest.GPT(t, 512, []disktest.GPTPart{{UUID: "3f1c2b7e-0a4d-4c55-9e21-6b7f8a9c0d1e", Name: "pv-storage", First: 34, Last: 2081}})
	last := int64(disktest.Size - 512)
	noBackup := bytes.Clone(gpt)
	noBackup[last+60] ^= 0xFF // the disk GUID, under the header's CRC
	noPrimary := bytes.Clone(gpt)
	noPrimary[512+60] ^= 0xFF
	parse := func(size uint64) func(io.ReaderAt) (partTable, bool) {
		return func(r io.ReaderAt) (partTable, bool) { return parseTable(r, 512, size) }
	}
	checkFaults(t, []faultCase{
		{"dos mbr", badSectors{bytes.NewReader(dos), []int64{0}}, false, true},
		{"dos extended boot record", badSectors{bytes.NewReader(dos), []int64{6144 * 512}}, true, true},
		{"dos, beyond the table", badSectors{bytes.NewReader(dos), []int64{7 << 20}}, true, false},
		{"gpt header", badSectors{bytes.NewReader(gpt), []int64{512}}, true, true},
		{"gpt entry array", badSectors{bytes.NewReader(gpt), []int64{2 * 512}}, true, true},
		{"gpt entry array, backup damaged", badSectors{bytes.NewReader(noBackup), []int64{2 * 512}}, false, true},
		{"gpt both entry arrays", badSectors{bytes.NewReader(gpt), []int64{2 * 512, last - 32*512}}, false, true},
	}, parse(disktest.Size))
	// The extended boot records lie beyond a disk cut short; the backup
	// GPT header of a disk claiming 2^64 bytes is at no offset a device
	// has (offset's -1): neither is the device's failure.
	checkFaults(t, []faultCase{{"dos cut short", bytes.NewReader(dos[:1<<20]), true, false}}, parse(uint64(len(dos))))
	checkFaults(t, []faultCase{{"gpt of 2^64 bytes", bytes.NewReader(noPrimary), false, false}}, parse(math.MaxUint64))
}

// The failures named are those of the device, not a missing medium nor
// a read at the device's end.
func TestDeviceFault(t *testing.T) {
	for _, err := range []error{nil, io.EOF, io.ErrUnexpectedEOF, unix.ENOMEDIUM, unix.ENXIO, fmt.Errorf("read: %w", io.EOF)} {
		if got := deviceFault(err); got != nil {
			t.Errorf("deviceFault(%v) = %v, want nil", err, got)
		}
	}
	for _, err := range []error{unix.EIO, unix.EACCES, errors.New("not block device 8:0")} {
		if got := deviceFault(err); got != err {
			t.Errorf("deviceFault(%v) = %v, want it kept", err, got)
		}
	}
}

// A tag no device carries names the disk that failed and how, and is
// still ErrNotFound, which a caller waits on.
func TestNotFoundNamesFaults(t *testing.T) {
	unread := []string{faultOf("/dev/mmcblk0", "read partition table", unix.EIO).Error(), noAnswer(device{node: "/dev/sda"})}
	err := notFound("PARTUUID=1234abcd-02", unread)
	want := "PARTUUID=1234abcd-02: no block device matches (/dev/mmcblk0: read partition table: input/output error; /dev/sda: did not answer a read within 2s)"
	if !errors.Is(err, ErrNotFound) || err.Error() != want {
		t.Errorf("notFound = %v, want %q wrapping ErrNotFound", err, want)
	}
	if err := faultOf("/dev/sr0", "open", unix.ENOMEDIUM); err != nil {
		t.Errorf("faultOf(no medium) = %v, want nil", err)
	}
}

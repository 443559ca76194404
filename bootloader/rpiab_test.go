package bootloader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pantavisor/pv/storage"
)

const abDefault = "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"

// newRPi lays out a Raspberry Pi in a temporary directory: partition 1
// with autoboot.txt booting 2 and trying 3, partition 2 installed for the
// factory revision, partition 3 empty, the tryboot flag unarmed.
func newRPi(t *testing.T) RPiAB {
	t.Helper()
	dir := t.TempDir()
	r := RPiAB{
		BootDir:         filepath.Join(dir, "storage", "boot"),
		Bootsel:         filepath.Join(dir, "p1"),
		Partitions:      map[int]string{2: filepath.Join(dir, "p2"), 3: filepath.Join(dir, "p3")},
		TrybootFlag:     filepath.Join(dir, "tryboot-flag"),
		TrybootProperty: filepath.Join(dir, "dt", "tryboot"),
		Image:           sameImage(filepath.Join(dir, "rpiboot.img")),
	}
	for _, d := range []string{r.Bootsel, r.Partitions[2], r.Partitions[3], filepath.Dir(r.TrybootProperty)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, r.autobootPath(), abDefault)
	writeFile(t, r.revsPath(2), "0\n")
	setTryboot(t, r, false)
	return r
}

// sameImage is an Image for which every revision has the same boot
// image, path (created when first asked for); none for revision "nobsp".
func sameImage(path string) func(string) (BootImage, error) {
	return func(rev string) (BootImage, error) {
		if rev == "nobsp" {
			return BootImage{}, fmt.Errorf("revision %s: %w", rev, ErrNoBootImage)
		}
		if err := os.WriteFile(path, []byte("boot files"), 0o644); err != nil {
			return BootImage{}, err
		}
		return BootImage{Path: path, Object: "a"}, nil
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func setTryboot(t *testing.T, r RPiAB, on bool) {
	t.Helper()
	cell := make([]byte, 4)
	if on {
		binary.BigEndian.PutUint32(cell, 1)
	}
	if err := os.WriteFile(r.TrybootProperty, cell, 0o644); err != nil {
		t.Fatal(err)
	}
}

// firmwareBoot stands in for the Raspberry Pi firmware at a reboot: it
// reads autoboot.txt, consumes the one-shot tryboot flag, tells the system
// in the tryboot property and returns the partition it boots.
func firmwareBoot(t *testing.T, r RPiAB) int {
	t.Helper()
	ab, err := parseAutoboot([]byte(readFile(t, r.autobootPath())))
	if err != nil {
		t.Fatalf("the firmware cannot read autoboot.txt: %v", err)
	}
	_, err = os.Stat(r.TrybootFlag)
	tryboot := err == nil
	if tryboot {
		if err := os.Remove(r.TrybootFlag); err != nil {
			t.Fatal(err)
		}
	}
	setTryboot(t, r, tryboot)
	if tryboot {
		return ab.Try
	}
	return ab.Boot
}

func running(t *testing.T, r RPiAB) string {
	t.Helper()
	rev, err := r.Running(mustLoad(t, r))
	if err != nil {
		t.Fatalf("running: %v", err)
	}
	return rev
}

// TestRPiABCycle runs updates through the model of the firmware: a try
// that commits, a try that crashes, a failed one, updates stacked without
// a reboot, and a commit cut short.
func TestRPiABCycle(t *testing.T) {
	r := newRPi(t)
	if p := firmwareBoot(t, r); p != 2 || running(t, r) != "0" {
		t.Fatalf("factory boot: partition %d running %s", p, running(t, r))
	}

	// Update to 1: tried on partition 3, committed.
	if reboot, err := r.Install("1"); err != nil || reboot {
		t.Fatalf("install 1: %v %v", reboot, err)
	}
	if got := readFile(t, r.revsPath(3)); got != "1\n" {
		t.Fatalf("pv_rev.txt of the try partition: %q", got)
	}
	if p := firmwareBoot(t, r); p != 3 || running(t, r) != "1" {
		t.Fatalf("tryboot: partition %d running %s", p, running(t, r))
	}
	if err := r.Commit("1"); err != nil {
		t.Fatal(err)
	}
	want := "[all]\ntryboot_a_b=1\nboot_partition=3\n[tryboot]\nboot_partition=2\n"
	if got := readFile(t, r.autobootPath()); got != want {
		t.Fatalf("autoboot.txt after commit:\n%s", got)
	}
	if p := firmwareBoot(t, r); p != 3 || running(t, r) != "1" {
		t.Fatalf("boot after commit: partition %d running %s", p, running(t, r))
	}

	// Update to 2 crashes during its try: the next boot is normal, on 3.
	if _, err := r.Install("2"); err != nil {
		t.Fatal(err)
	}
	if p := firmwareBoot(t, r); p != 2 || running(t, r) != "2" {
		t.Fatalf("tryboot of 2: partition %d running %s", p, running(t, r))
	}
	if p := firmwareBoot(t, r); p != 3 || running(t, r) != "1" {
		t.Fatalf("boot after a crashed try: partition %d running %s", p, running(t, r))
	}
	if err := r.Fail(); err != nil {
		t.Fatal(err)
	}
	if env := mustLoad(t, r); !maps.Equal(env, Env{"pv_rev": "1"}) {
		t.Fatalf("after fail: %v", env)
	}

	// A failed update before its reboot: Fail disarms the flag, so the
	// next boot does not try it.
	if _, err := r.Install("3"); err != nil {
		t.Fatal(err)
	}
	if err := r.Fail(); err != nil {
		t.Fatal(err)
	}
	if p := firmwareBoot(t, r); p != 3 || running(t, r) != "1" {
		t.Fatalf("boot after a failed install: partition %d running %s", p, running(t, r))
	}

	// Updates 4 and 5 stacked without a reboot: the try partition lists
	// both, and the tryboot runs the last.
	for _, rev := range []string{"4", "5"} {
		if _, err := r.Install(rev); err != nil {
			t.Fatal(err)
		}
	}
	if got := readFile(t, r.revsPath(2)); got != "4,5\n" {
		t.Fatalf("stacked pv_rev.txt: %q", got)
	}
	if p := firmwareBoot(t, r); p != 2 || running(t, r) != "5" {
		t.Fatalf("tryboot of stacked updates: partition %d running %s", p, running(t, r))
	}

	// The commit of 5 stops after rpiab.txt: the reboot boots the old
	// partition, Running says so, and a second Commit finishes it.
	env := mustLoad(t, r)
	if err := r.Save(env.committed("5")); err != nil {
		t.Fatal(err)
	}
	if p := firmwareBoot(t, r); p != 3 {
		t.Fatalf("boot after a cut commit: partition %d", p)
	}
	if _, err := r.Running(mustLoad(t, r)); !errors.Is(err, ErrCommitUnfinished) {
		t.Fatalf("running after a cut commit: %v, want ErrCommitUnfinished", err)
	}
	if err := r.Commit(mustLoad(t, r).Committed()); err != nil {
		t.Fatal(err)
	}
	if p := firmwareBoot(t, r); p != 2 || running(t, r) != "5" {
		t.Fatalf("boot after the finished commit: partition %d running %s", p, running(t, r))
	}
	if got := readFile(t, r.revsPath(2)); got != "5\n" {
		t.Fatalf("pv_rev.txt after commit: %q", got)
	}
	// Committing again changes nothing.
	before := readFile(t, r.autobootPath())
	if err := r.Commit("5"); err != nil || readFile(t, r.autobootPath()) != before {
		t.Fatalf("second commit: %v", err)
	}
}

// TestRPiABRefusals: bad files are refused by name, and nothing is
// written: no pv_rev.txt, no rpiab.txt, no flag.
func TestRPiABRefusals(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, r RPiAB)
		errHas string
	}{
		{"garbage autoboot.txt", func(t *testing.T, r RPiAB) { writeFile(t, r.autobootPath(), "garbage\n") },
			"read autoboot.txt /"},
		{"no autoboot.txt", func(t *testing.T, r RPiAB) { os.Remove(r.autobootPath()) }, "read autoboot.txt: open"},
		{"unknown partition", func(t *testing.T, r RPiAB) {
			writeFile(t, r.autobootPath(), strings.Replace(abDefault, "=3", "=4", 1))
		}, "autoboot.txt names partition 4"},
		{"garbage rpiab.txt", func(t *testing.T, r RPiAB) {
			os.MkdirAll(r.BootDir, 0o755)
			writeFile(t, r.envPath(), "garbage")
		}, "rpiab.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRPi(t)
			tt.setup(t, r)
			_, err := r.Install("1")
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("install: %v, want %q", err, tt.errHas)
			}
			if _, err := os.Stat(r.TrybootFlag); err == nil {
				t.Error("refused install armed the tryboot flag")
			}
			if tt.name != "garbage rpiab.txt" {
				if _, err := os.Stat(r.revsPath(3)); err == nil {
					t.Error("refused install wrote pv_rev.txt")
				}
				if _, err := os.Stat(r.envPath()); err == nil {
					t.Error("refused install wrote rpiab.txt")
				}
			}
		})
	}
	r := newRPi(t)
	_, err := r.Install("nobsp")
	if err == nil || !strings.Contains(err.Error(), "install revision nobsp") || !strings.Contains(err.Error(), `bsp/run.json's "rpiab" key`) {
		t.Errorf("install of a revision with no boot image: %v, want the revision and the key named", err)
	}
	for _, f := range []string{r.revsPath(3), r.envPath(), r.TrybootFlag} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("install of a revision with no boot image wrote %s", f)
		}
	}
	if err := r.Commit("7"); err == nil || !strings.Contains(err.Error(), "neither boot partition 2 nor 3 lists revision 7") {
		t.Errorf("commit of a revision no partition holds: %v", err)
	}
	if _, err := os.Stat(r.envPath()); err == nil {
		t.Error("refused commit wrote rpiab.txt")
	}
	if err := (RPiAB{}).Fail(); err == nil || !strings.Contains(err.Error(), "rpiab: no boot directory") {
		t.Errorf("fail without a layout: %v", err)
	}
	writeFile(t, r.TrybootProperty, "1")
	if _, err := r.Running(Env{}); err == nil || !strings.Contains(err.Error(), "1 bytes, want a 32-bit cell") {
		t.Errorf("running with a bad tryboot property: %v", err)
	}
}

// TestRPiABUnmountedPartitionListsNothing: a boot partition not mounted
// on its device node (its image write was cut by a power cut, and it did
// not mount at boot) lists no revision, whatever its mount point, a
// directory of the run tmpfs, holds. A normal boot runs without it; a
// commit does not switch autoboot.txt to it; a tryboot of it is an error.
// A character device stands for the node the mount point is not on.
func TestRPiABUnmountedPartitionListsNothing(t *testing.T) {
	r := newRPi(t)
	r.Devices = map[int]string{3: "/dev/null"}
	// A commit of 1 cut before autoboot.txt, as the partition's files
	// would say it, had it mounted: here they are the mount point's.
	writeFile(t, r.revsPath(3), "1\n")
	if err := r.Save(Env{VarRev: "0"}); err != nil {
		t.Fatal(err)
	}
	if rev := running(t, r); rev != "0" {
		t.Fatalf("normal boot with the try partition unmounted: running %s", rev)
	}
	if err := r.Save(Env{VarRev: "1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Running(mustLoad(t, r)); err == nil || errors.Is(err, ErrCommitUnfinished) {
		t.Errorf("a stale pv_rev.txt in an unmounted partition's mount point: %v, want an error other than ErrCommitUnfinished", err)
	}
	if err := r.Commit("1"); err == nil || !strings.Contains(err.Error(), "neither boot partition 2 nor 3 lists revision 1") {
		t.Errorf("commit of a revision only the unmounted partition's mount point lists: %v", err)
	}
	if got := readFile(t, r.autobootPath()); got != abDefault {
		t.Errorf("autoboot.txt switched to an unmounted partition:\n%s", got)
	}
	setTryboot(t, r, true)
	r.Devices = map[int]string{2: "/dev/null"}
	writeFile(t, r.autobootPath(), "[all]\ntryboot_a_b=1\nboot_partition=3\n[tryboot]\nboot_partition=2\n")
	if err := r.Save(Env{VarRev: "1", VarTry: "0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Running(mustLoad(t, r)); !errors.Is(err, errUnmounted) {
		t.Errorf("a tryboot of an unmounted partition: %v, want errUnmounted", err)
	}
}

// A tryboot of a partition that did not mount is a try that cannot read
// its boot partition (ErrTryUnreadable): the error names the partition
// and why its mount failed. A node
// that never appeared (its mount's error says so) is no mount either:
// taken for a partition without pv_rev.txt (a factory image), the tryboot
// ran the committed revision on the try's kernel.
func TestRPiABTrybootOfAPartitionNotMounted(t *testing.T) {
	for _, node := range []string{"/dev/null", "/dev/no-such-node"} {
		t.Run(node, func(t *testing.T) {
			r := newRPi(t)
			if _, err := r.Install("1"); err != nil {
				t.Fatal(err)
			}
			mountErr := errors.New("mount " + node + " (vfat) on " + r.Partitions[3] + ": invalid argument")
			r.Devices = map[int]string{3: node}
			r.MountErrors = map[int]error{3: mountErr}
			if p := firmwareBoot(t, r); p != 3 {
				t.Fatalf("the firmware booted partition %d, want the try's, 3", p)
			}
			rev, err := r.Running(mustLoad(t, r))
			if err == nil || !errors.Is(err, ErrTryUnreadable) || !errors.Is(err, errUnmounted) || !errors.Is(err, mountErr) || !strings.Contains(err.Error(), "partition 3 ("+node+")") {
				t.Errorf("a tryboot of partition 3, not mounted: %q, %v; want an error naming it and its mount's error", rev, err)
			}
		})
	}
}

// Updates stacked without a reboot share the try partition only when they
// share its boot image: a revision with another image starts the list
// afresh, and only a reboot starts it.
func TestRPiABStackedImages(t *testing.T) {
	r := newRPi(t)
	same := r.Image
	r.Image = func(rev string) (BootImage, error) {
		img, err := same(rev)
		if rev == "6" {
			img.Object = "b"
		}
		return img, err
	}
	for _, rev := range []string{"4", "5"} {
		if reboot, err := r.Install(rev); err != nil || reboot {
			t.Fatalf("install %s: %v %v", rev, reboot, err)
		}
	}
	if got := readFile(t, r.revsPath(3)); got != "4,5\n" {
		t.Fatalf("stacked pv_rev.txt: %q", got)
	}
	reboot, err := r.Install("6")
	if err != nil || !reboot {
		t.Fatalf("install of another image on stacked updates: %v %v, want a reboot", reboot, err)
	}
	if got := readFile(t, r.revsPath(3)); got != "6\n" {
		t.Fatalf("pv_rev.txt after another image: %q, want 6 alone", got)
	}
}

func TestRPiABFormat(t *testing.T) {
	r := newRPi(t)
	if _, err := r.Install("1"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(r.envPath())
	if want := append([]byte("pv_try=1\x00\x00"), make([]byte, RPiABSize-10)...); !bytes.Equal(data, want) {
		t.Fatalf("rpiab.txt = %q…, %d bytes", data[:16], len(data))
	}
	if err := r.Save(Env{"big": strings.Repeat("x", RPiABSize)}); !errors.Is(err, ErrTooBig) || !strings.Contains(err.Error(), "rpiab.txt") {
		t.Errorf("too big rpiab.txt: %v", err)
	}
}

func TestParseAutoboot(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   autoboot
		errHas string
	}{
		{"documented", abDefault, autoboot{2, 3}, ""},
		{"swapped", "[all]\ntryboot_a_b=1\nboot_partition=3\n[tryboot]\nboot_partition=2\n", autoboot{3, 2}, ""},
		{"upstream's trailing NUL", abDefault + "\x00", autoboot{2, 3}, ""},
		{"before any section is [all]", "tryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n", autoboot{2, 3}, ""},
		{"CRLF, comments, spaces", "# A/B\r\n[all]\r\n tryboot_a_b = 1\r\nboot_partition=2\r\n\r\n[tryboot]\r\nboot_partition=3\r\n", autoboot{2, 3}, ""},
		{"later wins", abDefault + "[all]\nboot_partition=4\n", autoboot{4, 3}, ""},
		{"[none] hides", abDefault + "[none]\nboot_partition=9\n", autoboot{2, 3}, ""},
		{"no tryboot_a_b", "[all]\nboot_partition=2\n[tryboot]\nboot_partition=3\n", autoboot{}, "no tryboot_a_b=1 in [all]"},
		{"tryboot_a_b=0", strings.Replace(abDefault, "a_b=1", "a_b=0", 1), autoboot{}, "no tryboot_a_b=1"},
		{"no [tryboot]", "[all]\ntryboot_a_b=1\nboot_partition=2\n", autoboot{}, "[all] and [tryboot] boot partition 2"},
		{"no boot_partition", "[all]\ntryboot_a_b=1\n[tryboot]\nboot_partition=3\n", autoboot{}, "no boot_partition in [all]"},
		{"same partitions", "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=2\n", autoboot{}, "not an A/B layout"},
		{"other filter", "[pi4]\n" + abDefault, autoboot{}, `line 1: section "[pi4]"`},
		{"unclosed section", "[all\n", autoboot{}, `section "[all"`},
		{"other property", abDefault + "kernel=x\n", autoboot{}, `line 6: "kernel=x": want boot_partition=N`},
		{"not a number", strings.Replace(abDefault, "=2", "=two", 1), autoboot{}, `line 3: boot_partition="two": not a number`},
		{"too big a number", strings.Replace(abDefault, "=2", "=256", 1), autoboot{}, "not a number"},
		{"too long", abDefault + strings.Repeat("#", 512), autoboot{}, "bytes: the firmware reads 512"},
		{"NUL inside", "[all]\x00\n", autoboot{}, "NUL at byte 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseAutoboot([]byte(tt.in))
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("err = %v, want %q", err, tt.errHas)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if got := string(autoboot{2, 3}.format()); got != abDefault {
		t.Errorf("format = %q", got)
	}
}

func TestParseRevList(t *testing.T) {
	tests := []struct {
		in     string
		want   []string
		errHas string
	}{
		{"35\n", []string{"35"}, ""},
		{"35", []string{"35"}, ""},
		{"35,36,37\r\n", []string{"35", "36", "37"}, ""},
		{"35, 36\n", []string{"35", "36"}, ""},
		{"locals/a,5\n", []string{"locals/a", "5"}, ""},
		{"\n", nil, "no revision"},
		{"35,,36\n", nil, "revision 2"},
		{"a b\n", nil, "revision 1"},
		{strings.Repeat("1,", 128), nil, "256 bytes: upstream reads 255"},
	}
	for _, tt := range tests {
		got, err := parseRevList([]byte(tt.in))
		if tt.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("parseRevList(%q) = %v, want %q", tt.in, err, tt.errHas)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("parseRevList(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestStackRevs(t *testing.T) {
	long := make([]string, 0, 60)
	for len(formatRevList(append(long, "1234"))) <= maxRevList {
		long = append(long, "1234")
	}
	tests := []struct {
		name   string
		prev   []string
		rev    string
		want   []string
		reboot bool
	}{
		{"fresh", nil, "35", []string{"35"}, false},
		{"stacked", []string{"35"}, "36", []string{"35", "36"}, false},
		{"stacked twice", []string{"35", "36"}, "37", []string{"35", "36", "37"}, false},
		{"already listed starts afresh", []string{"35", "36"}, "35", []string{"35"}, false},
		{"full starts afresh", long, "9", []string{"9"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reboot := stackRevs(tt.prev, tt.rev)
			if !slices.Equal(got, tt.want) || reboot != tt.reboot {
				t.Errorf("got %v %v, want %v %v", got, reboot, tt.want, tt.reboot)
			}
		})
	}
}

func TestRunningRev(t *testing.T) {
	tests := []struct {
		name        string
		tryboot     bool
		revs, other []string
		env         Env
		want        string
		err         error
		errHas      string
	}{
		{"tryboot", true, []string{"5"}, []string{"4"}, Env{"pv_rev": "4", "pv_try": "5"}, "5", nil, ""},
		{"tryboot of a stack", true, []string{"5", "6"}, nil, Env{"pv_rev": "4", "pv_try": "6"}, "6", nil, ""},
		{"tryboot without try", true, []string{"5"}, nil, Env{"pv_rev": "4"}, "", nil, "a tryboot of partition 3 with no pv_try"},
		{"tryboot of the wrong partition", true, []string{"4"}, nil, Env{"pv_rev": "4", "pv_try": "5"}, "", nil, "not pv_try 5"},
		{"early rollback", false, []string{"4"}, []string{"5"}, Env{"pv_rev": "4", "pv_try": "5"}, "4", nil, ""},
		{"early rollback, any partition", false, []string{"9"}, nil, Env{"pv_rev": "4", "pv_try": "5"}, "4", nil, ""},
		{"normal", false, []string{"4"}, []string{"3"}, Env{"pv_rev": "4"}, "4", nil, ""},
		{"factory", false, []string{"0"}, nil, Env{}, "0", nil, ""},
		{"commit unfinished", false, []string{"3"}, []string{"4"}, Env{"pv_rev": "4"}, "", ErrCommitUnfinished, ""},
		{"wrong partition", false, []string{"3"}, []string{"2"}, Env{"pv_rev": "4"}, "", nil, "not the committed 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := runningRev(tt.tryboot, 3, tt.revs, tt.other, tt.env)
			switch {
			case tt.err != nil:
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
			case tt.errHas != "":
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("err = %v, want %q", err, tt.errHas)
				}
			case err != nil || got != tt.want:
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// FuzzParseAutoboot: never panics, and what parses is written back to an
// autoboot.txt that parses the same and fits the firmware's 512 bytes.
func FuzzParseAutoboot(f *testing.F) {
	f.Add([]byte(abDefault))
	f.Add([]byte(abDefault + "\x00"))
	f.Add([]byte("tryboot_a_b=1\r\nboot_partition=2\n[none]\nx\n[tryboot]\nboot_partition=3"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ab, err := parseAutoboot(data)
		if err != nil {
			return
		}
		out := ab.format()
		if len(out) > AutobootMax {
			t.Fatalf("%d bytes", len(out))
		}
		back, err := parseAutoboot(out)
		if err != nil || back != ab {
			t.Fatalf("round trip: %v, %v != %v", back, err, ab)
		}
	})
}

// FuzzParsePvRevTxt: never panics, and what parses is written back to a
// pv_rev.txt that parses the same.
func FuzzParsePvRevTxt(f *testing.F) {
	f.Add([]byte("35\n"))
	f.Add([]byte("35, 36,37\r\n"))
	f.Add([]byte("locals/a,,b"))
	f.Fuzz(func(t *testing.T, data []byte) {
		revs, err := parseRevList(data)
		if err != nil {
			return
		}
		back, err := parseRevList(formatRevList(revs))
		if err != nil || !slices.Equal(back, revs) {
			t.Fatalf("round trip: %v, %v != %v", back, err, revs)
		}
	})
}

// errDirSync is the error of a save whose rename took and whose fsync of
// the directory failed: the new rpiab.txt is read back, and may not
// outlive a power cut.
var errDirSync = errors.New("sync dir: input/output error")

// failAfterRename makes r's saves of rpiab.txt return errDirSync after
// the rename, while fails says so of the variables being saved.
func failAfterRename(r *RPiAB, fails func(Env) bool) {
	r.saveEnv = func(path string, env Env, size int) error {
		if err := saveNulEnv(path, env, size, true); err != nil || !fails(env) {
			return err
		}
		return errDirSync
	}
}

// An install whose save of pv_try returns an error after its rename is
// undone: the variables as they were before it, and the flag as it was.
// Left in place, pv_try=1 with no flag was a normal boot read as the
// rollback of an update that had been refused (and a supervisor started
// again rebooted to it). It is judged as everywhere (Confirm, with
// Installed): not installed. Over revision 1 armed (updates stacked on
// the same image), 1 stays armed. When every save fails so, the undo's
// too, what is read back is the undo's: refused all the same.
func TestRPiABInstallWhosePvTrySaveFailsIsUndone(t *testing.T) {
	installed := func(r RPiAB, rev string) func(Env) bool {
		return func(e Env) bool { ok, err := r.Installed(e, rev); return ok && err == nil }
	}
	refused := func(t *testing.T, r RPiAB, rev string) {
		t.Helper()
		_, err := r.Install(rev)
		if !errors.Is(err, errDirSync) {
			t.Fatalf("install %s: %v, want the save's error", rev, err)
		}
		if cerr := Confirm(r, err, installed(r, rev)); cerr == nil || errors.Is(cerr, ErrUnconfirmed) {
			t.Errorf("install %s judged by what is stored: %v, want it refused", rev, cerr)
		}
	}
	t.Run("nothing armed", func(t *testing.T) {
		r := newRPi(t)
		failAfterRename(&r, func(e Env) bool { return e.Try() == "1" })
		refused(t, r, "1")
		if env := mustLoad(t, r); env.Try() != "" {
			t.Errorf("variables %v after a refused install: want no pv_try", env)
		}
		if _, err := os.Stat(r.TrybootFlag); err == nil {
			t.Error("a refused install armed the flag")
		}
		if p := firmwareBoot(t, r); p != 2 || running(t, r) != "0" || mustLoad(t, r).Try() != "" {
			t.Errorf("the next boot: partition %d, running %s, variables %v; want 0 with no try to report", p, running(t, r), mustLoad(t, r))
		}
	})
	t.Run("revision 1 armed", func(t *testing.T) {
		r := newRPi(t)
		if _, err := r.Install("1"); err != nil {
			t.Fatal(err)
		}
		failAfterRename(&r, func(e Env) bool { return e.Try() == "2" })
		refused(t, r, "2")
		if env := mustLoad(t, r); !installed(r, "1")(env) {
			t.Errorf("variables %v after a refused install over 1 armed: want 1 still armed", env)
		}
		if p := firmwareBoot(t, r); p != 3 || running(t, r) != "1" {
			t.Errorf("the next boot: partition %d, running %s; want the tryboot of 1", p, running(t, r))
		}
	})
	t.Run("every save fails", func(t *testing.T) {
		r := newRPi(t)
		failAfterRename(&r, func(Env) bool { return true })
		refused(t, r, "1")
		if env := mustLoad(t, r); env.Try() != "" {
			t.Errorf("variables %v after a refused install: want the undo's, no pv_try", env)
		}
	})
}

// An install whose arming of the flag returns an error after its rename
// (the flag in place) is undone whole: pv_try as before, and the flag
// taken back. Left armed with pv_try undone, the next reboot was a
// tryboot with no pv_try: safe mode (found by review). Over revision 1
// armed on the same image, 1 stays armed.
func TestRPiABInstallWhoseArmingFailsIsUndone(t *testing.T) {
	failArm := func(r *RPiAB) {
		r.writeFlag = func(path string, data []byte, perm os.FileMode) error {
			if err := storage.WriteFileAtomic(path, data, perm); err != nil {
				return err
			}
			return errDirSync
		}
	}
	t.Run("nothing armed", func(t *testing.T) {
		r := newRPi(t)
		failArm(&r)
		if _, err := r.Install("1"); !errors.Is(err, errDirSync) {
			t.Fatalf("install 1: %v, want the arming's error", err)
		}
		if env := mustLoad(t, r); env.Try() != "" {
			t.Errorf("variables %v after a refused install: want no pv_try", env)
		}
		if _, err := os.Stat(r.TrybootFlag); err == nil {
			t.Error("a refused install left the flag armed: a tryboot with no pv_try")
		}
	})
	t.Run("revision 1 armed", func(t *testing.T) {
		r := newRPi(t)
		if _, err := r.Install("1"); err != nil {
			t.Fatal(err)
		}
		failArm(&r)
		if _, err := r.Install("2"); !errors.Is(err, errDirSync) {
			t.Fatalf("install 2: %v, want the arming's error", err)
		}
		if ok, err := r.Installed(mustLoad(t, r), "1"); !ok || err != nil {
			t.Errorf("after a refused install over 1 armed: 1 installed %v, %v; want it still armed", ok, err)
		}
	})
}

// What power cuts left of the writes to autoboot.txt and pv_rev.txt is
// removed, and nothing else: the files themselves, a device maker's own
// dot files, and the mount point of a partition that did not mount stay.
func TestRPiABRemoveLeftovers(t *testing.T) {
	r := newRPi(t)
	r.Devices = map[int]string{3: "/dev/null"} // partition 3 did not mount
	left := []string{
		filepath.Join(r.Bootsel, ".autoboot.txt.tmp123"),
		filepath.Join(r.Bootsel, ".autoboot.txt.tmp9"),
		filepath.Join(r.Partitions[2], ".pv_rev.txt.tmp44"),
	}
	kept := []string{
		r.autobootPath(), r.revsPath(2),
		filepath.Join(r.Bootsel, ".config.txt.tmp1"),
		filepath.Join(r.Bootsel, ".autoboot.txt.bak"),
		filepath.Join(r.Partitions[3], ".pv_rev.txt.tmp5"),
	}
	for _, f := range append(slices.Clone(left), kept[2:]...) {
		writeFile(t, f, "x")
	}
	removed, err := r.RemoveLeftovers()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	slices.Sort(left)
	if !slices.Equal(removed, left) {
		t.Errorf("removed %q, want %q", removed, left)
	}
	for _, f := range left {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", f, err)
		}
	}
	for _, f := range kept {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

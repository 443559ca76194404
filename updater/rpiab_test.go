package updater

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/storage"
	"github.com/pantavisor/pv/update"
)

// rpiDevice is device with the rpiab backend on a Raspberry Pi laid out in
// directories (as bootloader's own tests do): partition 1 boots 2 and
// tries 3, partition 2 is installed for the factory revision.
func rpiDevice(t *testing.T) (*Device, bootloader.RPiAB) {
	t.Helper()
	d := device(t, nil)
	dir := t.TempDir()
	r := bootloader.RPiAB{BootDir: d.Layout.Boot(), Bootsel: filepath.Join(dir, "p1"),
		Partitions:  map[int]string{2: filepath.Join(dir, "p2"), 3: filepath.Join(dir, "p3")},
		TrybootFlag: filepath.Join(dir, "tryboot-flag"), TrybootProperty: filepath.Join(dir, "tryboot"),
		PartitionProperty: filepath.Join(dir, "partition"), // absent unless a test writes it
		Image: func(string) (bootloader.BootImage, error) {
			return bootloader.BootImage{Path: filepath.Join(dir, "rpiboot.img"), Object: "a"}, nil
		}}
	write(t, filepath.Join(dir, "rpiboot.img"), "boot files")
	for _, p := range []string{r.Bootsel, r.Partitions[2], r.Partitions[3]} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(r.Bootsel, "autoboot.txt"), "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n")
	write(t, filepath.Join(r.Partitions[2], "pv_rev.txt"), "0\n")
	firmware(t, r, false)
	d.Bootloader = r
	return d, r
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// firmware stands for the firmware at a boot: the one-shot flag is gone
// (consumed, or lost with the power), and the tryboot property says
// whether this boot is a tryboot.
func firmware(t *testing.T, r bootloader.RPiAB, tryboot bool) {
	t.Helper()
	if err := os.Remove(r.TrybootFlag); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var on uint32
	if tryboot {
		on = 1
	}
	write(t, r.TrybootProperty, string(binary.BigEndian.AppendUint32(nil, on)))
}

// committedOne is an rpiab device that installed revision 1, tried it
// (TESTING, the firmware's tryboot) and committed it: what comes after
// the commit is the test's.
func committedOne(t *testing.T) (*Device, bootloader.RPiAB) {
	d, r := rpiDevice(t)
	if _, err := d.Install("1"); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteProgress("1", storage.NewProgress(storage.StatusTesting, storage.MsgTry)); err != nil {
		t.Fatal(err)
	}
	firmware(t, r, true)
	if err := d.Commit("1"); err != nil {
		t.Fatal(err)
	}
	return d, r
}

// The firmware, not a latch in the variables, says what an rpiab boot
// runs. An update installed whose tryboot never happened (the power went
// before the reboot, and the flag with it) boots partition 2, revision
// 0's kernel: revision 0 runs and the try is reported rolled back. Taken
// from the variables, revision 1's containers ran on revision 0's boot
// files, tried as if the firmware had booted it. A tryboot runs the try,
// and stores no latch: the firmware is the latch.
func TestStartRPiABRunsWhatTheFirmwareBooted(t *testing.T) {
	d, r := rpiDevice(t)
	if _, err := d.Install("1"); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteProgress("1", storage.NewProgress(storage.StatusInProgress, storage.MsgTry)); err != nil {
		t.Fatal(err)
	}
	firmware(t, r, false)
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.Rev != "0" || b.Trying || b.Reboot != "" || b.SafeMode != "" {
		t.Fatalf("normal boot with pv_try set: %+v; want the committed revision 0", b)
	}
	if p := d.mustProgress(t, "1"); p.Status != storage.StatusError || p.Msg != storage.MsgRolledBack {
		t.Errorf("progress of the try %+v: want the rollback reported", p)
	}

	// Installed again: its progress is new.
	if _, err := d.Install("1"); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteProgress("1", storage.NewProgress(storage.StatusInProgress, storage.MsgTry)); err != nil {
		t.Fatal(err)
	}
	firmware(t, r, true)
	if b, err = d.Start(); err != nil {
		t.Fatal(err)
	}
	if b.Rev != "1" || !b.Trying || b.State == nil {
		t.Fatalf("tryboot: %+v; want revision 1 tried", b)
	}
	if env := d.mustEnv(t); env[bootloader.VarTrying] != "" {
		t.Errorf("a latch stored for rpiab: %v", env)
	}
}

// cutCommit leaves a commit of revision 1 stopped after rpiab.txt, before
// autoboot.txt was switched, and the normal boot after it: partition 2
// (revision 0) booted, the committed revision is on partition 3.
func cutCommit(t *testing.T, d *Device, r bootloader.RPiAB) {
	t.Helper()
	if _, err := d.Install("1"); err != nil {
		t.Fatal(err)
	}
	firmware(t, r, true)
	if err := r.Save(bootloader.Env{"pv_rev": "1"}); err != nil {
		t.Fatal(err)
	}
	firmware(t, r, false)
}

// A commit cut short is finished at the next boot, which then reboots
// into the committed revision; nothing runs on the old partition's boot
// files meanwhile.
func TestStartRPiABFinishesACutCommit(t *testing.T) {
	d, r := rpiDevice(t)
	cutCommit(t, d, r)
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.Reboot == "" || b.SafeMode != "" || b.State != nil {
		t.Fatalf("boot after a cut commit: %+v; want a reboot after the commit is finished", b)
	}
	ab, err := os.ReadFile(filepath.Join(r.Bootsel, "autoboot.txt"))
	if err != nil || !strings.Contains(string(ab), "[all]\ntryboot_a_b=1\nboot_partition=3\n") {
		t.Fatalf("autoboot.txt %q, %v: want partition 3 booted", ab, err)
	}
	// The reboot: the firmware boots partition 3, revision 1.
	if b, err = d.Start(); err != nil || b.Rev != "1" || b.Reboot != "" || b.SafeMode != "" {
		t.Fatalf("boot after the finished commit: %+v, %v", b, err)
	}
}

// commitFails and commitLies are rpiab whose Commit fails, or returns nil
// having done nothing.
type commitFails struct{ bootloader.RPiAB }

func (commitFails) Commit(string) error { return errors.New("autoboot.txt: I/O error") }

type commitLies struct{ bootloader.RPiAB }

func (commitLies) Commit(string) error { return nil }

// A cut commit that cannot be finished, or that still reads unfinished
// after a Commit said it was done, is safe mode with the reason: a reboot
// would meet the same files at every boot. So is any boot rpiab cannot
// tell (a tryboot of a partition that is not the try's).
func TestStartRPiABUnknownBootIsSafeMode(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, d *Device, r bootloader.RPiAB)
		want  string
	}{
		{"commit fails", func(t *testing.T, d *Device, r bootloader.RPiAB) {
			cutCommit(t, d, r)
			d.Bootloader = commitFails{r}
		}, "finish the commit of revision 1: autoboot.txt: I/O error"},
		{"commit does not take", func(t *testing.T, d *Device, r bootloader.RPiAB) {
			cutCommit(t, d, r)
			d.Bootloader = commitLies{r}
		}, "still cannot tell its boot"},
		{"tryboot of another revision", func(t *testing.T, d *Device, r bootloader.RPiAB) {
			if _, err := d.Install("1"); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(r.Partitions[3], "pv_rev.txt"), "7\n")
			firmware(t, r, true)
		}, "cannot tell which revision it booted"},
		{"garbage autoboot.txt", func(t *testing.T, d *Device, r bootloader.RPiAB) {
			write(t, filepath.Join(r.Bootsel, "autoboot.txt"), "garbage\n")
		}, "read autoboot.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, r := rpiDevice(t)
			tt.setup(t, d, r)
			b, err := d.Start()
			if err != nil {
				t.Fatal(err)
			}
			if b.Reboot != "" || b.State != nil || b.Action != update.BootSafeMode || !strings.Contains(b.SafeMode, tt.want) {
				t.Fatalf("boot %+v: want safe mode with %q, no reboot", b, tt.want)
			}
		})
	}
}

// A tryboot whose partition did not mount (a kernel without vfat, a
// damaged partition) is a failed try: its progress ERROR, pv_try dropped,
// and a reboot, which the firmware's one-shot tryboot makes a normal boot
// of the committed revision. It was safe mode: no containers until
// someone rebooted the device (found by review).
func TestStartRPiABTryOfAnUnreadablePartitionFails(t *testing.T) {
	d, r := rpiDevice(t)
	if _, err := d.Install("1"); err != nil {
		t.Fatal(err)
	}
	// A character device stands for the node the mount point is not on.
	mountErr := errors.New("mount /dev/mmcblk0p3 (vfat) on /run/rpiab/p3: invalid argument")
	r.Devices = map[int]string{3: "/dev/null"}
	r.MountErrors = map[int]error{3: mountErr}
	d.Bootloader = r
	firmware(t, r, true)
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.Reboot == "" || b.SafeMode != "" || b.State != nil || b.Action != update.BootRollback ||
		!strings.Contains(b.Reboot, "partition 3 (/dev/null)") || !strings.Contains(b.Reboot, mountErr.Error()) {
		t.Fatalf("boot %+v: want a rollback reboot naming the partition and its mount's error", b)
	}
	if p, err := d.Progress("1"); err != nil || p == nil || p.Status != storage.StatusError {
		t.Errorf("progress of 1: %+v, %v; want ERROR", p, err)
	}
	if env := d.mustEnv(t); env.Try() != "" {
		t.Errorf("variables %v: want pv_try dropped", env)
	}
	// The reboot: the firmware's tryboot is one-shot.
	d.Bootloader = r
	firmware(t, r, false)
	b, err = d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.Rev != "0" || b.Reboot != "" || b.SafeMode != "" || b.State == nil {
		t.Errorf("the boot after: %+v; want the committed revision 0 running", b)
	}
}

// An rpiab install whose last step, arming the tryboot flag, fails is no
// install: the read-back of the variables alone took pv_try=1 for the
// whole step, and the reboot, not a tryboot, reported an update rolled
// back that had been refused. pv_try goes with the failure. (The second
// review found it.)
func TestRPiABInstallUnarmedIsNoInstall(t *testing.T) {
	d, r := rpiDevice(t)
	r.TrybootFlag = filepath.Join(t.TempDir(), "no-such-dir", "tryboot")
	d.Bootloader = r
	reboot, err := d.Install("1")
	if err == nil {
		t.Fatalf("install: reboot=%v, no error, yet the tryboot flag is not armed", reboot)
	}
	if env := d.mustEnv(t); env.Try() != "" {
		t.Errorf("variables %v after a refused install: want no pv_try", env)
	}
}

// A supervisor started again in the boot that tried and committed revision
// 1, with no running record, asks the backend once more: the commit has
// swapped autoboot.txt and cleared pv_try, while the tryboot property
// still says 1. The firmware's partition property says which partition
// booted, and it lists the committed revision: 1 runs. Worked out from
// autoboot.txt, it was "a tryboot of partition 2 with no pv_try": safe
// mode. (The second review found it.)
func TestRPiABStartAgainAfterACommitInTheSameBoot(t *testing.T) {
	d, r := rpiDevice(t)
	if _, err := d.Install("1"); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteProgress("1", storage.NewProgress(storage.StatusInProgress, storage.MsgTry)); err != nil {
		t.Fatal(err)
	}
	firmware(t, r, true)
	write(t, r.PartitionProperty, string(binary.BigEndian.AppendUint32(nil, 3)))
	if b, err := d.Start(); err != nil || b.Rev != "1" || !b.Trying {
		t.Fatalf("tryboot: %+v %v", b, err)
	}
	if err := d.Commit("1"); err != nil {
		t.Fatal(err)
	}
	b, err := d.Start()
	if err != nil || b.SafeMode != "" || b.Rev != "1" || b.Trying {
		t.Fatalf("started again after the commit: rev %q trying %v safe mode %q, %v; want revision 1 run, committed", b.Rev, b.Trying, b.SafeMode, err)
	}
}

// On a Pi the firmware's partition property is always there, and it says
// the partition this boot loaded until the next boot, while a commit
// swaps autoboot.txt at once. A commit cut before autoboot.txt boots
// partition 2 again: Start finishes the commit and must reboot into 3;
// asked again, the backend said the commit was still unfinished, and
// the device stayed in safe mode. (The third review found it in 2a781cd.)
func TestRPiABCutCommitWithThePartitionProperty(t *testing.T) {
	d, r := rpiDevice(t)
	cutCommit(t, d, r)
	write(t, r.PartitionProperty, string(binary.BigEndian.AppendUint32(nil, 2)))
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.Reboot == "" || b.SafeMode != "" {
		t.Fatalf("boot after a cut commit, property 2: reboot %q safe mode %q; want a reboot", b.Reboot, b.SafeMode)
	}
}

// A non-reboot update committed in a normal boot of partition 2 swaps
// autoboot.txt to 3. A supervisor started again in the same boot
// (property still 2) runs revision 1. (The third review.)
func TestRPiABStartAgainAfterANonRebootCommit(t *testing.T) {
	d, r := rpiDevice(t)
	write(t, r.PartitionProperty, string(binary.BigEndian.AppendUint32(nil, 2)))
	if b, err := d.Start(); err != nil || b.Rev != "0" {
		t.Fatalf("first boot: %+v %v", b, err)
	}
	if reboot, err := d.Install("1"); err != nil || reboot {
		t.Fatalf("install: reboot %v, %v", reboot, err)
	}
	if err := d.WriteProgress("1", storage.NewProgress(storage.StatusInProgress, storage.MsgTry)); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit("1"); err != nil {
		t.Fatal(err)
	}
	b, err := d.Start()
	if err != nil || b.SafeMode != "" || b.Rev != "1" {
		t.Fatalf("started again after a non-reboot commit: rev %q safe mode %q reboot %q, %v; want 1 run", b.Rev, b.SafeMode, b.Reboot, err)
	}
}

// rpiab: revision 1 tried and committed (autoboot.txt now boots 3), the
// power cut before DONE; rpiab.txt is corrupt at the next, normal, boot of
// partition 3, which lists 1, with pv_rev=1 on the command line. 1 runs:
// stored as the try, the normal boot read as its rollback ran revision 0
// on 1's boot files. (The third review found it in c17eda6.)
func TestRPiABCorruptVariablesAfterACommit(t *testing.T) {
	d, r := committedOne(t)
	firmware(t, r, false)
	write(t, r.PartitionProperty, string(binary.BigEndian.AppendUint32(nil, 3)))
	write(t, filepath.Join(r.BootDir, "rpiab.txt"), "pv_rev\x00garbage")
	if _, err := r.Load(); !errors.Is(err, bootloader.ErrCorrupt) {
		t.Fatalf("load: %v, want ErrCorrupt", err)
	}
	d.BootedRev = "1"
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.Rev != "1" {
		p := d.mustProgress(t, "1")
		t.Errorf("runs %q (why %q) on partition 3's boot files, progress of 1 %s %q: want the committed 1", b.Rev, b.Why, p.Status, p.Msg)
	}
}

// rpiab: revision 1 tried and committed (autoboot.txt boots partition 3,
// which lists 1 alone), then rpiab.txt damaged (garbage, zeroed, gone)
// and no pv_rev on the command line, which an rpiab boot image, shared
// by the revisions its partition lists, does not carry. The variables
// then named no committed revision, read as the factory one: partition
// 2 lists 0, so the boot took it for a commit of 0 cut short, "finished"
// it by switching autoboot.txt back to partition 2 and rebooted into the
// factory revision, revision 1 left for the automatic GC. A commit
// always stores pv_rev, and leaves the partition a normal boot loads
// listing that revision alone: that one is the committed revision, and
// is stored as such.
func TestRPiABVariablesLostKeepTheCommittedRevision(t *testing.T) {
	for name, damage := range map[string]func(path string){
		"garbage": func(path string) { write(t, path, "pv_rev\x00garbage") },
		"zeroed":  func(path string) { write(t, path, string(make([]byte, bootloader.RPiABSize))) },
		"gone": func(path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			d, r := committedOne(t)
			if err := d.WriteProgress("1", storage.NewProgress(storage.StatusDone, storage.MsgDone)); err != nil {
				t.Fatal(err)
			}
			firmware(t, r, false)
			damage(filepath.Join(r.BootDir, "rpiab.txt"))
			b, err := d.Start()
			if err != nil {
				t.Fatal(err)
			}
			if b.Rev != "1" || b.State == nil || b.Reboot != "" || b.SafeMode != "" {
				t.Errorf("boot %+v, reboot %q, safe mode %q: want the committed revision 1 running", b.Boot, b.Reboot, b.SafeMode)
			}
			if ab, err := os.ReadFile(filepath.Join(r.Bootsel, "autoboot.txt")); err != nil || !strings.Contains(string(ab), "[all]\ntryboot_a_b=1\nboot_partition=3\n") {
				t.Errorf("autoboot.txt %q, %v: want partition 3, revision 1's, booted", ab, err)
			}
			if env := d.mustEnv(t); env.Committed() != "1" {
				t.Errorf("variables %v: want pv_rev=1 stored", env)
			}
		})
	}
}

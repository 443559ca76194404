package updater

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pantavisor/pv/update"
)

// A tryboot whose partition mounts but whose pv_rev.txt cannot be read
// (emptied or zeroed by a damaged vfat, an EIO on a worn SD card) is a
// failed try, rolled back by a plain reboot, as one whose partition does
// not mount. Found by review: it was safe mode, no containers until
// someone rebooted the device.
func TestTrybootOfAnUnreadablePvRevIsAFailedTry(t *testing.T) {
	d, r := rpiDevice(t)
	if _, err := d.Install("1"); err != nil {
		t.Fatal(err)
	}
	// The tried partition mounts; its list of revisions reads as none.
	if err := os.WriteFile(filepath.Join(r.Partitions[3], "pv_rev.txt"), []byte("\x00\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	firmware(t, r, true)
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.Action != update.BootRollback || b.Reboot == "" || b.SafeMode != "" {
		t.Errorf("boot %+v: want a rollback reboot, as for a tried partition that does not mount", b)
	}
}

// A tryboot of a partition that mounts but has no pv_rev.txt (its file
// lost by a damaged vfat) is a failed try too: an Install always writes
// pv_rev.txt before it arms the flag. Found by review: it was taken for a
// factory image, and the committed revision's containers ran on the
// kernel and firmware the try's image loaded.
func TestTrybootOfAPartitionWithoutPvRevIsAFailedTry(t *testing.T) {
	d, r := rpiDevice(t)
	if _, err := d.Install("1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(r.Partitions[3], "pv_rev.txt")); err != nil {
		t.Fatal(err)
	}
	firmware(t, r, true)
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.State != nil || b.Reboot == "" {
		t.Errorf("boot %+v: the committed revision runs on the try's boot files; want a rollback reboot", b.Boot)
	}
}

// A power cut during an install's image write leaves the try partition
// a mix of its old and new blocks (the block device's page cache is
// written back in no order): it may mount, with a pv_rev.txt whose
// clusters now hold the new image's bytes. The flag was disarmed before
// the write, so the firmware boots [all], the committed revision, whose
// own partition is intact: that revision runs. It was safe mode (no
// containers) for the unreadable list of a partition this boot does not
// use.
func TestNormalBootWithATornTryPartitionRunsTheCommitted(t *testing.T) {
	for name, torn := range map[string]string{
		"garbage": "\x7fELF\x02\x01\x01\x00 kernel bytes",
		"zeroed":  "\x00\x00\x00\x00",
		"empty":   "",
	} {
		t.Run(name, func(t *testing.T) {
			d, r := rpiDevice(t)
			// Stands for the cut install: the image write began (the
			// flag disarmed), nothing after it happened.
			if err := os.WriteFile(filepath.Join(r.Partitions[3], "pv_rev.txt"), []byte(torn), 0o644); err != nil {
				t.Fatal(err)
			}
			firmware(t, r, false)
			b, err := d.Start()
			if err != nil {
				t.Fatal(err)
			}
			if b.Action != update.BootRun || b.Rev != "0" || b.State == nil || b.SafeMode != "" || b.Reboot != "" {
				t.Errorf("boot %+v (safe mode %q): want the committed revision 0 running", b.Boot, b.SafeMode)
			}
			// And the next install writes the partition again.
			if _, err := d.Install("1"); err != nil {
				t.Errorf("install after the torn one: %v", err)
			}
		})
	}
}

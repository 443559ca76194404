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

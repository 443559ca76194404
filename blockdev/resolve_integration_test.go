//go:build integration

package blockdev

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/disktest"
	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/internal/stuckdev"
)

// randomHex is n random bytes in hex: labels and UUIDs no device of the
// host carries.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func randomUUID(t *testing.T) string {
	h := randomHex(t, 16)
	return fmt.Sprintf("%s-%s-4%s-8%s-%s", h[0:8], h[8:12], h[13:16], h[17:20], h[20:32])
}

// ext4Image makes a 2 MiB ext4 image with label and uuid.
func ext4Image(t *testing.T, label, uuid string) string {
	t.Helper()
	mkfs := "/usr/sbin/mkfs.ext4"
	if _, err := os.Stat(mkfs); err != nil {
		t.Skipf("%s: %v", mkfs, err)
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	if out, err := exec.Command(mkfs, "-q", "-F", "-L", label, "-U", uuid, img, "2M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return img
}

// attach binds img to a free loop device, detached when t ends.
func attach(t *testing.T, img string) string {
	t.Helper()
	losetup, err := exec.LookPath("losetup")
	if err != nil {
		if losetup, err = exec.LookPath("/usr/sbin/losetup"); err != nil {
			t.Skip("no losetup")
		}
	}
	out, err := exec.Command(losetup, "--find", "--show", "--read-only", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup %s: %v: %s", img, err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(losetup, "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

func TestResolveLoopExt4(t *testing.T) {
	isolated.Require(t)
	label, uuid := "pvt-"+randomHex(t, 6), randomUUID(t)
	img := ext4Image(t, label, uuid)

	// Not there yet: what a caller waits on.
	if dev, _, err := Resolve("LABEL=" + label); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Resolve(LABEL=%s) before attaching = %q, %v; want ErrNotFound", label, dev, err)
	}
	loop := attach(t, img)
	for _, spec := range []string{"LABEL=" + label, `LABEL="` + label + `"`, "UUID=" + uuid, "UUID=" + strings.ToUpper(uuid)} {
		if dev, _, err := Resolve(spec); err != nil || dev != loop {
			t.Errorf("Resolve(%s) = %q, %v; want %s", spec, dev, err, loop)
		}
	}
	unknown := "LABEL=pvt-" + randomHex(t, 6)
	dev, _, err := Resolve(unknown)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), unknown) {
		t.Errorf("Resolve(%s) = %q, %v; want ErrNotFound naming the spec", unknown, dev, err)
	}
}

func TestResolveLoopFAT(t *testing.T) {
	isolated.Require(t)
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	id := binary.LittleEndian.Uint32(b)
	label := "PV" + strings.ToUpper(randomHex(t, 4)) // 10 of FAT's 11 characters
	img := fatVolume{sector: fatBootSector(false, label, id), root: [][]byte{dirEntry(label, 0x08, 0)}}.write(t)
	loop := attach(t, img)
	uuid := fmt.Sprintf("%04X-%04X", id>>16, id&0xFFFF)
	for _, spec := range []string{"LABEL=" + label, "UUID=" + uuid, "UUID=" + strings.ToLower(uuid)} {
		if dev, _, err := Resolve(spec); err != nil || dev != loop {
			t.Errorf("Resolve(%s) = %q, %v; want %s", spec, dev, err, loop)
		}
	}
}

// Two devices with the label: neither is mounted, since either may be
// the wrong storage.
func TestResolveLoopDuplicate(t *testing.T) {
	isolated.Require(t)
	label := "pvt-" + randomHex(t, 6)
	a := attach(t, ext4Image(t, label, randomUUID(t)))
	b := attach(t, ext4Image(t, label, randomUUID(t)))
	dev, _, err := Resolve("LABEL=" + label)
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), b) {
		t.Fatalf("Resolve(LABEL=%s) = %q, %v; want an error naming %s and %s", label, dev, err, a, b)
	}
}

// A device whose reads never return (a suspended device-mapper volume, a
// dead USB stick; here a loop device whose reads stuckdev holds) does not
// stop the scan: the readable device with the label is used and the stuck
// one named. Later calls pass it over at once rather than start another
// reader stuck beside the first. Once it answers it counts again, and as
// it carries the label too, the two are refused.
func TestResolveStuckDevice(t *testing.T) {
	isolated.Require(t)
	label := "LABEL=pvt-" + randomHex(t, 6)
	stuck := stuckdev.New(t, ext4Image(t, strings.TrimPrefix(label, "LABEL="), randomUUID(t)))
	// Run before the device is detached, on failure too: no probe is
	// left stuck when the test ends.
	t.Cleanup(func() { stuck.Resume(); waitProbes(t) })
	good := attach(t, ext4Image(t, strings.TrimPrefix(label, "LABEL="), randomUUID(t)))
	checkStuck(t, stuck, stuck.Node, good, label, "LABEL=pvt-"+randomHex(t, 6))
}

// A device whose reads fail (a dying eMMC; here a loop device whose
// FUSE server is gone, which the kernel fails with EIO) is named with
// its error when no device carries the tag, and does not keep another
// device that carries it from being found, though it may carry it too:
// it is named then as well, for the log.
func TestResolveFailingDevice(t *testing.T) {
	isolated.Require(t)
	label := "pvt-" + randomHex(t, 6)
	failing := stuckdev.New(t, ext4Image(t, label, randomUUID(t)))
	failing.Fail()
	checkFailing(t, failing.Node+": read filesystem: input/output error", "LABEL="+label, "LABEL=pvt-"+randomHex(t, 6),
		func() string { return attach(t, ext4Image(t, label, randomUUID(t))) })
}

// checkFailing checks what Resolve does with a device that fails: want
// is how it is named; spec, which it carries, resolves to the node
// carrier attaches, unknown is not found.
func checkFailing(t *testing.T, want, spec, unknown string, carrier func() string) {
	t.Helper()
	dev, unread, err := Resolve(unknown)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), want) || !slices.Contains(unread, want) {
		t.Errorf("Resolve(%s) = %q, %v, %v; want ErrNotFound naming %q", unknown, dev, unread, err, want)
	}
	good := carrier()
	if dev, unread, err = Resolve(spec); err != nil || dev != good || !slices.Contains(unread, want) {
		t.Errorf("Resolve(%s) = %q, %v, %v; want %s, %q unread", spec, dev, unread, err, good, want)
	}
}

// checkStuck checks what Resolve does with stuck, a device whose reads
// are held: spec, which carrier (stuck or a partition of it) and good
// both carry, resolves to good within probeTimeout with stuck named as
// unread; unknown, which no device carries, is not found at once while
// the first read is still stuck, with stuck named, and without piling up
// goroutines; once stuck is resumed, spec is refused, naming both.
func checkStuck(t *testing.T, stuck *stuckdev.Device, carrier, good, spec, unknown string) {
	t.Helper()
	start := time.Now()
	dev, unread, err := Resolve(spec)
	if err != nil || dev != good || !names(unread, stuck.Node) {
		t.Fatalf("Resolve(%s) = %q, %v, %v; want %s, %s named as unread", spec, dev, unread, err, good, stuck.Node)
	}
	if took := time.Since(start); took > probeTimeout+time.Second {
		t.Errorf("Resolve took %v, probeTimeout is %v", took, probeTimeout)
	}
	if stuck.Held() == 0 {
		t.Fatalf("no read of %s held: the scan did not reach it", stuck.Node)
	}

	settle := func() int { time.Sleep(100 * time.Millisecond); return runtime.NumGoroutine() }
	before := settle()
	for range 10 {
		start := time.Now()
		_, unread, err := Resolve(unknown)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), stuck.Node) || !names(unread, stuck.Node) {
			t.Fatalf("Resolve(%s) = %v, %v; want ErrNotFound naming %s", unknown, unread, err, stuck.Node)
		}
		if took := time.Since(start); took >= probeTimeout {
			t.Fatalf("Resolve(%s) waited %v on %s, whose first probe is still stuck", unknown, took, stuck.Node)
		}
	}
	if after := settle(); after > before+3 {
		t.Errorf("%d goroutines after 10 more calls, %d before: probes pile up on %s", after, before, stuck.Node)
	}

	stuck.Resume()
	waitProbes(t)
	dev, unread, err = Resolve(spec)
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), good) || !strings.Contains(err.Error(), carrier) || names(unread, stuck.Node) {
		t.Errorf("Resolve(%s) after resuming = %q, %v, %v; want an error naming %s and %s, %s no longer unread", spec, dev, unread, err, good, carrier, stuck.Node)
	}
}

// names reports whether unread, Resolve's, names node ("node: why").
func names(unread []string, node string) bool {
	return slices.ContainsFunc(unread, func(u string) bool { return strings.HasPrefix(u, node+": ") })
}

// waitProbes waits for every probe still running to end.
func waitProbes(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		probing.Lock()
		n := len(probing.rdev)
		probing.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d probes still running 10s after their devices answered", n)
			return
		}
	}
}

// blkidPart is what util-linux's blkid, the reference udev's links come
// from, reads of partition node in its disk's table: its
// ID_PART_ENTRY_* values (UUID, NAME, encoded as in udev's links), none
// when it finds no table.
func blkidPart(t *testing.T, node string) map[string]string {
	t.Helper()
	bin, err := exec.LookPath("blkid")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/blkid"); err != nil {
			t.Skip("no blkid")
		}
	}
	out, err := exec.Command(bin, "-p", "-o", "udev", node).Output()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 2) { // 2: nothing found
		t.Fatalf("blkid -p %s: %v", node, err)
	}
	ids := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "ID_PART_ENTRY_") {
			ids[strings.TrimPrefix(k, "ID_PART_ENTRY_")] = v
		}
	}
	return ids
}

// resolvesTo checks that each spec resolves to node.
func resolvesTo(t *testing.T, node string, specs ...string) {
	t.Helper()
	for _, spec := range specs {
		if dev, unread, err := Resolve(spec); err != nil || dev != node {
			t.Errorf("Resolve(%s) = %q, %v, %v; want %s", spec, dev, unread, err, node)
		}
	}
}

// A DOS disk's partitions, primary, extended and logical (5, 6), are
// found by the PARTUUID blkid gives them: the disk signature and the
// partition number.
func TestResolveLoopPartUUIDDOS(t *testing.T) {
	isolated.Require(t)
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	sig := binary.LittleEndian.Uint32(b) | 1 // not 0, which has no PARTUUID
	d := disktest.MBR{
		Signature: sig,
		Primaries: []disktest.MBRPart{{Type: 0x83, Start: 2048, Size: 4096}, {Type: 0x05, Start: 6144, Size: 8192}},
		Logicals:  []disktest.MBRPart{{Type: 0x83, Start: 8192, Size: 2048}, {Type: 0x83, Start: 12288, Size: 2048}},
	}
	disk := disktest.Attach(t, disktest.Write(t, d.Image(512)), 512)
	for _, n := range []int{1, 2, 5, 6} {
		node := disktest.Part(disk, n)
		want := fmt.Sprintf("%08x-%02x", sig, n)
		if ref := blkidPart(t, node)["UUID"]; ref != want {
			t.Errorf("blkid reads PARTUUID %q on %s, want %q", ref, node, want)
		}
		resolvesTo(t, node, "PARTUUID="+want, "PARTUUID="+strings.ToUpper(want))
	}
	if dev, _, err := Resolve(fmt.Sprintf("PARTUUID=%08x-03", sig)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(PARTUUID of the unused entry 3) = %q, %v; want ErrNotFound", dev, err)
	}
}

// A GPT disk's partitions are found by the unique GUID and the name blkid
// reads in their entries, on disks of 512-byte and 4 KiB sectors.
func TestResolveLoopPartGPT(t *testing.T) {
	isolated.Require(t)
	for _, ss := range []int{512, 4096} {
		t.Run(fmt.Sprint(ss), func(t *testing.T) {
			first := uint64(2 + 16384/ss)
			parts := []disktest.GPTPart{
				{UUID: randomUUID(t), Name: "pv storage é " + randomHex(t, 4), First: first, Last: first + 255},
				{UUID: randomUUID(t), Name: "pvt-" + randomHex(t, 6), First: first + 256, Last: first + 511},
			}
			disk := disktest.Attach(t, disktest.Write(t, disktest.GPT(t, ss, parts)), ss)
			for i, p := range parts {
				node := disktest.Part(disk, i+1)
				ref := blkidPart(t, node)
				if ref["UUID"] != p.UUID || ref["NAME"] != udevEncode(p.Name) {
					t.Errorf("blkid reads %s as %q %q, want %q %q", node, ref["UUID"], ref["NAME"], p.UUID, udevEncode(p.Name))
				}
				resolvesTo(t, node, "PARTUUID="+p.UUID, "PARTUUID="+strings.ToUpper(p.UUID), "PARTLABEL="+p.Name, `PARTLABEL="`+p.Name+`"`)
			}
			if dev, _, err := Resolve("PARTLABEL=" + strings.ToUpper(parts[1].Name)); !errors.Is(err, ErrNotFound) {
				t.Errorf("Resolve(PARTLABEL in other case) = %q, %v; want ErrNotFound", dev, err)
			}
		})
	}
}

// Two disks with a partition of the same name: neither is mounted.
func TestResolveLoopPartLabelDuplicate(t *testing.T) {
	isolated.Require(t)
	name := "pvt-" + randomHex(t, 6)
	var nodes []string
	for range 2 {
		img := disktest.GPT(t, 512, []disktest.GPTPart{{UUID: randomUUID(t), Name: name, First: 34, Last: 2081}})
		nodes = append(nodes, disktest.Part(disktest.Attach(t, disktest.Write(t, img), 512), 1))
	}
	dev, _, err := Resolve("PARTLABEL=" + name)
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), nodes[0]) || !strings.Contains(err.Error(), nodes[1]) {
		t.Fatalf("Resolve(PARTLABEL=%s) = %q, %v; want an error naming %s and %s", name, dev, err, nodes[0], nodes[1])
	}
}

// A GPT whose primary header is damaged after its partitions were made
// is read from its backup, as blkid does; once the backup is damaged too
// no partition of the disk is found by its name, by blkid nor Resolve.
func TestResolveLoopPartGPTCorrupt(t *testing.T) {
	isolated.Require(t)
	p := disktest.GPTPart{UUID: randomUUID(t), Name: "pvt-" + randomHex(t, 6), First: 34, Last: 2081}
	disk := disktest.Attach(t, disktest.Write(t, disktest.GPT(t, 512, []disktest.GPTPart{p})), 512)
	node := disktest.Part(disk, 1)
	damage := func(off int64) {
		t.Helper()
		// Through the disk's node, whose cache blkid and Resolve read.
		f, err := os.OpenFile(disk, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0xFF
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	damage(512 + 60) // the disk GUID, under the header's CRC
	if ref := blkidPart(t, node); ref["UUID"] != p.UUID || ref["NAME"] != p.Name {
		t.Errorf("primary header damaged: blkid reads %v, want %s %s from the backup", ref, p.UUID, p.Name)
	}
	resolvesTo(t, node, "PARTUUID="+p.UUID, "PARTLABEL="+p.Name)

	damage(disktest.Size - 512 + 60)
	if ref := blkidPart(t, node); len(ref) > 0 {
		t.Errorf("both headers damaged: blkid reads %v, want nothing", ref)
	}
	for _, spec := range []string{"PARTUUID=" + p.UUID, "PARTLABEL=" + p.Name} {
		if dev, _, err := Resolve(spec); !errors.Is(err, ErrNotFound) {
			t.Errorf("both headers damaged: Resolve(%s) = %q, %v; want ErrNotFound", spec, dev, err)
		}
	}
}

// namedGPT is the image of a GPT disk with one partition named name,
// with a GUID of its own.
func namedGPT(t *testing.T, name string) string {
	return disktest.Write(t, disktest.GPT(t, 512, []disktest.GPTPart{{UUID: randomUUID(t), Name: name, First: 34, Last: 2081}}))
}

// namedGPTOnStuckdev is namedGPT on a stuckdev device, with its partition.
func namedGPTOnStuckdev(t *testing.T, name string) *stuckdev.Device {
	return stuckdev.NewPartitioned(t, namedGPT(t, name), []stuckdev.Partition{{Start: 34 * 512, Length: 2048 * 512}})
}

// A disk whose reads never return does not stop a partition scan: its
// table is read under probeTimeout as a device is, the readable disk
// with the name is used, and the stuck disk is named. Later calls pass
// it over at once. Once it answers its partition counts, and as it
// carries the name too, the two are refused.
func TestResolveLoopPartStuckDisk(t *testing.T) {
	isolated.Require(t)
	name := "pvt-" + randomHex(t, 6)
	stuck := namedGPTOnStuckdev(t, name)
	t.Cleanup(func() { stuck.Resume(); waitProbes(t) })
	good := disktest.Part(disktest.Attach(t, namedGPT(t, name), 512), 1)
	checkStuck(t, stuck, disktest.Part(stuck.Node, 1), good, "PARTLABEL="+name, "PARTUUID="+randomUUID(t))
}

// A disk whose reads fail is named with its error, as a device is, and
// does not keep a partition of another disk from being found.
func TestResolveLoopPartFailingDisk(t *testing.T) {
	isolated.Require(t)
	name := "pvt-" + randomHex(t, 6)
	failing := namedGPTOnStuckdev(t, name)
	failing.Fail()
	checkFailing(t, failing.Node+": read partition table: input/output error", "PARTLABEL="+name, "PARTUUID="+randomUUID(t), func() string {
		return disktest.Part(disktest.Attach(t, namedGPT(t, name), 512), 1)
	})
}

// A disk whose reads fail fails in each of its partitions too: a LABEL=
// scan, which reads every device, names the disk once, with its
// partitions, rather than the same error once per partition.
func TestResolveFailingDiskNamedOnce(t *testing.T) {
	isolated.Require(t)
	failing := namedGPTOnStuckdev(t, "pvt-"+randomHex(t, 6))
	failing.Fail()
	part := disktest.Part(failing.Node, 1)
	_, unread, err := Resolve("LABEL=pvt-" + randomHex(t, 6))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Resolve of an unknown label: %v", err)
	}
	want := failing.Node + ": read filesystem: input/output error (its partitions too: " + part + ")"
	if !slices.Contains(unread, want) || names(unread, part) {
		t.Errorf("unread = %q; want %q, and no entry of %s's own", unread, want, part)
	}
}

// On a loop device of a disk whose valid primary GPT has a large entry
// array (largePrimaryGPT), the partition is resolved by the names blkid
// -p (udev's ID_PART_ENTRY_*) gives it, the primary's, never by those of
// its stale backup (found by review: they were).
func TestResolveLoopPartLargePrimaryGPT(t *testing.T) {
	isolated.Require(t)
	cur := disktest.GPTPart{UUID: randomUUID(t), Name: "pvt-" + randomHex(t, 6)}
	stale := disktest.GPTPart{UUID: randomUUID(t), Name: "pvt-" + randomHex(t, 6)}
	disk := disktest.Attach(t, disktest.Write(t, largePrimaryGPT(t, cur.UUID, cur.Name, stale.UUID, stale.Name)), 512)
	node := disktest.Part(disk, 1)
	ref := blkidPart(t, node)
	if ref["UUID"] != cur.UUID || ref["NAME"] != cur.Name {
		t.Fatalf("blkid reads %s as %q %q, the test expects the primary's %q %q", node, ref["UUID"], ref["NAME"], cur.UUID, cur.Name)
	}
	resolvesTo(t, node, "PARTUUID="+cur.UUID, "PARTLABEL="+cur.Name)
	for _, spec := range []string{"PARTUUID=" + stale.UUID, "PARTLABEL=" + stale.Name} {
		if dev, _, err := Resolve(spec); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resolve(%s), a name blkid gives no partition: %q, %v; want ErrNotFound", spec, dev, err)
		}
	}
}

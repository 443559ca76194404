//go:build integration

package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/internal/isolated"
)

// A device's rpiab partitions are mounted by pantavisor under the run
// directory, and the backend works on them: the revision installed is on
// the try partition's filesystem. A tryboot flag left before a boot is
// dropped (the firmware drops its own); a supervisor started again keeps
// it and the mounts the previous one made. The disk is three loop
// devices; ext4 stands in for FAT, which this kernel may lack (the
// filesystem type is the only difference).
func TestRPiABPartitionsMounted(t *testing.T) {
	isolated.Require(t)
	requireTools(t)
	files := map[int]map[string]string{
		// With what power cuts left of earlier writes, which place
		// removes.
		1: {"autoboot.txt": "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n", ".autoboot.txt.tmp77": "[all]\n"},
		2: {"pv_rev.txt": "0\n", ".pv_rev.txt.tmp3": ""},
		3: {},
	}
	devs := map[int]string{}
	for n, content := range files {
		devs[n] = attachLoop(t, ext4ImageOf(t, content))
	}
	site, run, log := testSite(t, devs)
	if err := os.MkdirAll(site.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	flag := filepath.Join(site.dir, "tryboot")
	if err := os.WriteFile(flag, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	r, err := site.place(log)
	if err != nil {
		t.Fatalf("place: %v", err)
	}
	if r.TrybootFlag != flag {
		t.Errorf("tryboot flag %s, want %s", r.TrybootFlag, flag)
	}
	if _, err := os.Stat(flag); !os.IsNotExist(err) {
		t.Errorf("the flag left before the boot is still there: %v", err)
	}
	at := map[int]string{1: r.Bootsel, 2: r.Partitions[2], 3: r.Partitions[3]}
	for n, dev := range devs {
		onDevice(t, at[n], dev)
		for name := range files[n] {
			_, err := os.Stat(filepath.Join(at[n], name))
			if left := strings.Contains(name, ".tmp"); left && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("partition %d: %s a power cut left is still there (%v)", n, name, err)
			} else if !left && err != nil {
				t.Errorf("partition %d: %v", n, err)
			}
		}
	}

	r.BootDir = filepath.Join(t.TempDir(), "boot")
	r.TrybootProperty = filepath.Join(t.TempDir(), "tryboot")
	if err := os.WriteFile(r.TrybootProperty, make([]byte, 4), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(r.BootDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if rev, err := r.Running(bootloader.Env{}); err != nil || rev != "0" {
		t.Fatalf("running: %q, %v", rev, err)
	}
	img := bootloader.BootImage{Path: ext4ImageOf(t, nil), Object: "a"}
	r.Image = func(string) (bootloader.BootImage, error) { return img, nil }
	if _, err := r.Install("1"); err != nil {
		t.Fatalf("install: %v", err)
	}
	onDevice(t, filepath.Join(r.Partitions[3], "pv_rev.txt"), devs[3])

	// A supervisor started again: the mounts are the previous one's, and
	// the armed flag stays.
	again := site
	again.boot = false
	if _, err := again.place(log); err != nil {
		t.Fatalf("place again: %v", err)
	}
	if _, err := os.Stat(flag); err != nil {
		t.Errorf("the armed flag went with a supervisor started again: %v", err)
	}
	if n := mountsAt(t, r.Bootsel); n != 1 {
		t.Errorf("%s mounted %d times", r.Bootsel, n)
	}

	unmountRPiAB(run, log)
	for _, p := range at {
		if n := mountsAt(t, p); n != 0 {
			t.Errorf("%s still mounted after unmountRPiAB", p)
		}
	}

	// A partition that does not mount is an error naming it.
	bad := site
	bad.fstype = "squashfs"
	if _, err := bad.place(log); err == nil || !strings.Contains(err.Error(), "partition 1") || !strings.Contains(err.Error(), devs[1]) {
		t.Errorf("a partition that does not mount: %v", err)
	}
}

// A boot needs partition 1 and the partition autoboot.txt's [all] boots,
// not the [tryboot] one: that one not mounting (its image write cut by a
// power cut) is logged, and the boot runs on; it lists no revision until
// an install writes it. In a tryboot, which loaded it, which revision
// runs cannot be told: the log and the backend's answer name the
// partition and its mount's error (they said it listed no revision until
// the next install, and "not mounted"). [all]'s partition not mounting is
// the reason, named.
func TestRPiABTryPartitionUnmountable(t *testing.T) {
	isolated.Require(t)
	requireTools(t)
	autoboot := map[string]string{"autoboot.txt": "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"}
	sound := attachLoop(t, ext4ImageOf(t, map[string]string{"pv_rev.txt": "0\n"}))
	torn := attachLoop(t, zeroImage(t))
	devs := map[int]string{1: attachLoop(t, ext4ImageOf(t, autoboot)), 2: sound, 3: torn}
	site, run, log := testSite(t, devs)

	r, err := site.place(log)
	if err != nil {
		t.Fatalf("place with the try partition unmountable: %v", err)
	}
	if n := mountsAt(t, r.Partitions[3]); n != 0 {
		t.Errorf("the torn try partition is mounted %d times", n)
	}
	r.BootDir = t.TempDir()
	r.TrybootProperty = filepath.Join(t.TempDir(), "tryboot")
	if err := os.WriteFile(r.TrybootProperty, make([]byte, 4), 0o644); err != nil {
		t.Fatal(err)
	}
	if rev, err := r.Running(bootloader.Env{bootloader.VarRev: "0"}); err != nil || rev != "0" {
		t.Errorf("normal boot with the try partition unmountable: %q, %v; want 0", rev, err)
	}
	unmountRPiAB(run, log)

	tryboot := site
	tryboot.tryboot = filepath.Join(t.TempDir(), "tryboot")
	if err := os.WriteFile(tryboot.tryboot, []byte{0, 0, 0, 1}, 0o644); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	r, err = tryboot.place(slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatalf("place in a tryboot with the try partition unmountable: %v", err)
	}
	if out := logged.String(); !strings.Contains(out, "which this tryboot loaded, does not mount") || !strings.Contains(out, "partition=3") ||
		!strings.Contains(out, "mount "+torn+" (ext4)") {
		t.Errorf("logged in a tryboot of the unmountable partition:\n%s", out)
	}
	r.BootDir = t.TempDir()
	_, err = r.Running(bootloader.Env{bootloader.VarRev: "0", bootloader.VarTry: "1"})
	if err == nil || !errors.Is(err, bootloader.ErrTryUnreadable) || !strings.Contains(err.Error(), "this tryboot loaded partition 3 ("+torn+")") || !strings.Contains(err.Error(), "mount "+torn+" (ext4)") {
		t.Errorf("tryboot of the unmountable partition: %v, want it and its mount's error named", err)
	}
	unmountRPiAB(run, log)

	devs[2], devs[3] = torn, sound
	if _, err := site.place(log); err == nil || !strings.Contains(err.Error(), "partition 2, which autoboot.txt boots") {
		t.Errorf("the [all] partition unmountable: %v, want it named", err)
	}
}

// Install writes the revision's boot image onto the try partition, which
// shows it mounted again, with pv_rev.txt, before pv_try and the flag:
// a plain image, then updates stacked on the same image (not written
// again), then a gzipped other image (written, the list afresh, a
// reboot). An image larger than the partition (a gzipped one measured no
// further than the partition holds), or none, is refused with
// nothing changed. Then the state a power cut between the image write and
// the remount leaves: the flag gone with the tmpfs, the partition torn; a
// normal boot runs the committed revision (pv_try set, no tryboot: a
// rollback), and the next install writes the partition whole again.
func TestRPiABInstallWritesTheImage(t *testing.T) {
	isolated.Require(t)
	requireTools(t)
	devs := map[int]string{
		1: attachLoop(t, ext4ImageOf(t, map[string]string{"autoboot.txt": "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"})),
		2: attachLoop(t, ext4ImageOf(t, map[string]string{"pv_rev.txt": "0\n"})),
		3: attachLoop(t, ext4ImageOf(t, nil)),
	}
	images := map[string]bootloader.BootImage{
		"1": {Path: ext4ImageOf(t, map[string]string{"kernel": "one"}), Object: "a"},
		"3": {Path: gzipped(t, ext4ImageOf(t, map[string]string{"kernel": "three"})), Gzip: true, Object: "b"},
		"4": {Path: ext4ImageSized(t, map[string]string{"kernel": "four"}, "4M"), Object: "c"},
		"6": {Path: gzippedZeros(t, 64<<20), Gzip: true, Object: "d"},
	}
	images["2"] = images["1"]
	site, run, log := testSite(t, devs)
	boot, property := t.TempDir(), filepath.Join(t.TempDir(), "tryboot")
	if err := os.WriteFile(property, make([]byte, 4), 0o644); err != nil {
		t.Fatal(err)
	}
	place := func() bootloader.RPiAB {
		t.Helper()
		r, err := site.place(log)
		if err != nil {
			t.Fatalf("place: %v", err)
		}
		r.BootDir, r.TrybootProperty = boot, property
		r.Image = func(rev string) (bootloader.BootImage, error) {
			if img, ok := images[rev]; ok {
				return img, nil
			}
			return bootloader.BootImage{}, fmt.Errorf("revision %s: %w", rev, bootloader.ErrNoBootImage)
		}
		return r
	}
	r := place()
	p3 := r.Partitions[3]
	installed := func(rev, kernel, revs string, reboot bool) {
		t.Helper()
		got, err := r.Install(rev)
		if err != nil || got != reboot {
			t.Fatalf("install %s: reboot %v, %v; want reboot %v", rev, got, err, reboot)
		}
		if data, err := os.ReadFile(filepath.Join(p3, "kernel")); err != nil || string(data) != kernel {
			t.Fatalf("after install %s the try partition's kernel is %q, %v; want %q", rev, data, err, kernel)
		}
		onDevice(t, filepath.Join(p3, "kernel"), devs[3])
		if data, err := os.ReadFile(filepath.Join(p3, "pv_rev.txt")); err != nil || string(data) != revs {
			t.Errorf("after install %s pv_rev.txt is %q, %v; want %q", rev, data, err, revs)
		}
		if env, err := r.Load(); err != nil || env.Try() != rev {
			t.Errorf("after install %s: variables %v, %v", rev, env, err)
		}
		if _, err := os.Stat(r.TrybootFlag); err != nil {
			t.Errorf("after install %s the flag is not armed: %v", rev, err)
		}
	}

	installed("1", "one", "1\n", false)
	// A file the image does not have tells whether it was written again.
	if err := os.WriteFile(filepath.Join(p3, "since"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	installed("2", "one", "1,2\n", false)
	if _, err := os.Stat(filepath.Join(p3, "since")); err != nil {
		t.Errorf("stacked on the same image, the partition was written again: %v", err)
	}
	installed("3", "three", "3\n", true)
	if _, err := os.Stat(filepath.Join(p3, "since")); err == nil {
		t.Error("another image was not written")
	}

	// Refusals leave everything as it was: revision 3 armed.
	_, err := r.Install("4")
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("is 4194304 bytes, partition 3 (%s) holds 2097152", devs[3])) {
		t.Errorf("install of an image larger than the partition: %v, want the sizes named", err)
	}
	if _, err := r.Install("5"); !errors.Is(err, bootloader.ErrNoBootImage) || !strings.Contains(err.Error(), "revision 5") {
		t.Errorf("install of a revision with no image: %v", err)
	}
	// Compressed, an image is measured up to the partition's size only:
	// a small gzip can decompress to terabytes.
	_, err = r.Install("6")
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("decompresses to more than 2097152 bytes: larger than the partition, partition 3 (%s) holds 2097152", devs[3])) {
		t.Errorf("install of a gzipped image larger than the partition: %v, want it refused at the partition's size", err)
	}
	onDevice(t, filepath.Join(p3, "kernel"), devs[3])
	if data, _ := os.ReadFile(filepath.Join(p3, "pv_rev.txt")); string(data) != "3\n" {
		t.Errorf("a refused install changed pv_rev.txt: %q", data)
	}
	if env, err := r.Load(); err != nil || env.Try() != "3" {
		t.Errorf("a refused install changed the variables: %v, %v", env, err)
	}
	if _, err := os.Stat(r.TrybootFlag); err != nil {
		t.Errorf("a refused install disarmed the flag: %v", err)
	}

	// A power cut after the image write began and before the remount:
	// the flag went with the tmpfs (Install disarmed it before the write
	// anyway), partition 3 holds a torn image.
	unmountRPiAB(run, log)
	if err := os.WriteFile(devs[3], make([]byte, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	r = place()
	if mountsAt(t, p3) != 0 {
		t.Fatal("the torn partition mounted")
	}
	if _, err := os.Stat(r.TrybootFlag); err == nil {
		t.Error("the flag survived the boot")
	}
	if rev, err := r.Running(mustLoadEnv(t, r)); err != nil || rev != "0" {
		t.Errorf("boot after a cut image write: %q, %v; want the committed 0", rev, err)
	}
	installed("1", "one", "1\n", false)
}

func mustLoadEnv(t *testing.T, r bootloader.RPiAB) bootloader.Env {
	t.Helper()
	env, err := r.Load()
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// gzipped writes path compressed beside it and returns the copy's path.
func gzipped(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	if _, err := z.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	gz := path + ".gz"
	if err := os.WriteFile(gz, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return gz
}

// gzippedZeros is n zero bytes gzipped.
func gzippedZeros(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "zeros.img")
	if err := os.WriteFile(path, make([]byte, n), 0o644); err != nil {
		t.Fatal(err)
	}
	return gzipped(t, path)
}

// zeroImage is a 2 MiB image of zeros: no filesystem mounts it.
func zeroImage(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "zero.img")
	if err := os.WriteFile(img, make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return img
}

// ext4ImageOf makes a 2 MiB ext4 image holding files.
func ext4ImageOf(t *testing.T, files map[string]string) string {
	t.Helper()
	return ext4ImageSized(t, files, "2M")
}

// ext4ImageSized makes an ext4 image of size (mkfs.ext4's) holding files.
func ext4ImageSized(t *testing.T, files map[string]string, size string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "part.img")
	if out, err := exec.Command("/usr/sbin/mkfs.ext4", "-q", "-F", "-d", dir, img, size).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return img
}

// attachLoop attaches img to a loop device, detached at the test's end.
func attachLoop(t *testing.T, img string) string {
	t.Helper()
	out, err := exec.Command("/usr/sbin/losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("/usr/sbin/losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

// onDevice fails t unless path is on the filesystem of the block device dev.
func onDevice(t *testing.T, path, dev string) {
	t.Helper()
	var on, node unix.Stat_t
	if err := unix.Stat(path, &on); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(dev, &node); err != nil {
		t.Fatal(err)
	}
	if on.Dev != node.Rdev {
		t.Errorf("%s is on device %d:%d, not on %s", path, unix.Major(on.Dev), unix.Minor(on.Dev), dev)
	}
}

// mountsAt counts the mounts at path in this mount namespace.
func mountsAt(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == path {
			n++
		}
	}
	return n
}

// A container's mount namespace is a copy of pantavisor's; with / an
// initramfs (NoPivotRoot) it keeps the boot partitions' mounts under its
// root, as slaves (libcontainer's default propagation) of ours. Install
// unmounts the try partition to write its image: the copy must go with
// ours, or the write is refused (EBUSY) for as long as the container
// runs, and every later install too. (The third review found it.)
func TestRPiABInstallWhileAContainerHoldsACopy(t *testing.T) {
	isolated.Require(t)
	requireTools(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare (util-linux)")
	}
	img := bootloader.BootImage{Path: ext4ImageOf(t, map[string]string{"kernel": "one"}), Object: "a"}
	r, _, run := placeDisk(t, nil)
	r.Image = func(string) (bootloader.BootImage, error) { return img, nil }
	// What supervise does after isolate made every mount private.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatal(err)
	}
	shareRPiAB(run, slog.New(slog.NewTextHandler(t.Output(), nil)))
	// The container: a mount namespace of its own, its mounts slaves of
	// ours, as libcontainer makes them.
	holder := exec.Command(unshare, "--mount", "--propagation", "slave", "sleep", "60")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	self, _ := os.Readlink("/proc/self/ns/mnt")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", holder.Process.Pid)); err == nil && ns != self {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the holder never entered a mount namespace of its own")
		}
	}
	time.Sleep(100 * time.Millisecond) // --propagation slave follows the unshare
	if _, err := r.Install("1"); err != nil {
		t.Fatalf("install while a container holds a copy of the mounts: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(r.Partitions[3], "kernel")); err != nil || string(data) != "one" {
		t.Fatalf("the try partition's kernel %q, %v; want the image's", data, err)
	}
}

// testSite places devs (ext4 images) under a run directory of the test's,
// as a device's boot does, unmounting them when the test ends.
func testSite(t *testing.T, devs map[int]string) (rpiabSite, string, *slog.Logger) {
	t.Helper()
	run := filepath.Join(t.TempDir(), "run")
	site := rpiabSite{devs: devs, dir: rpiabDir(run), fstype: "ext4", wait: 5 * time.Second, boot: true}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	t.Cleanup(func() { unmountRPiAB(run, log) })
	return site, run, log
}

// An install whose try partition cannot be unmounted (a file held open
// on it: busy) is refused with nothing changed. Over updates stacked
// without a reboot, the revision armed before stays armed, its image,
// pv_rev.txt and pv_try in place: the refusal disarmed the tryboot flag
// first, and the next reboot, a normal one with pv_try set, rolled back
// the revision running. Over nothing armed, nothing is armed.
func TestRPiABInstallWithTheTryPartitionBusy(t *testing.T) {
	isolated.Require(t)
	requireTools(t)
	images := map[string]bootloader.BootImage{
		"1": {Path: ext4ImageOf(t, map[string]string{"kernel": "one"}), Object: "a"},
		"2": {Path: ext4ImageOf(t, map[string]string{"kernel": "two"}), Object: "b"},
	}
	r, devs, _ := placeDisk(t, map[string]string{"kernel": "factory"})
	r.Image = func(rev string) (bootloader.BootImage, error) { return images[rev], nil }
	p3 := r.Partitions[3]
	hold := func() *os.File {
		t.Helper()
		f, err := os.Open(filepath.Join(p3, "kernel"))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	refused := func(rev string) {
		t.Helper()
		if _, err := r.Install(rev); err == nil || !strings.Contains(err.Error(), "partition 3: unmount") {
			t.Fatalf("install %s with the try partition busy: %v, want the unmount refused", rev, err)
		}
		onDevice(t, filepath.Join(p3, "kernel"), devs[3])
	}

	busy := hold()
	refused("1")
	busy.Close()
	if _, err := os.Stat(r.TrybootFlag); err == nil {
		t.Error("a refused install over nothing armed armed the flag")
	}
	if env := mustLoadEnv(t, r); env.Try() != "" {
		t.Errorf("a refused install over nothing armed set pv_try: %v", env)
	}

	if _, err := r.Install("1"); err != nil {
		t.Fatalf("install 1: %v", err)
	}
	busy = hold()
	defer busy.Close()
	refused("2")
	env := mustLoadEnv(t, r)
	if ok, err := r.Installed(env, "1"); !ok || err != nil {
		_, ferr := os.Stat(r.TrybootFlag)
		t.Errorf("after a refused install over revision 1 armed: 1 installed %v, %v (variables %v, flag %v); want it still armed", ok, err, env, ferr)
	}
	if data, err := os.ReadFile(filepath.Join(p3, "kernel")); err != nil || string(data) != "one" {
		t.Errorf("the try partition's kernel %q, %v; want revision 1's", data, err)
	}
	if data, err := os.ReadFile(filepath.Join(p3, "pv_rev.txt")); err != nil || string(data) != "1\n" {
		t.Errorf("pv_rev.txt %q, %v; want 1 alone", data, err)
	}
	busy.Close()
	if reboot, err := r.Install("2"); err != nil || !reboot {
		t.Fatalf("install 2 once the partition is free: reboot %v, %v", reboot, err)
	}
	if data, err := os.ReadFile(filepath.Join(p3, "kernel")); err != nil || string(data) != "two" {
		t.Errorf("the try partition's kernel %q, %v; want revision 2's", data, err)
	}
}

// placeDisk places a disk of loop devices laid out as upstream's, in a
// normal boot: partition 1 boots 2 (installed for the factory revision)
// and tries 3, which holds try. It returns the backend, with boot
// variables and a tryboot property of the test's, the devices and the
// run directory.
func placeDisk(t *testing.T, try map[string]string) (bootloader.RPiAB, map[int]string, string) {
	t.Helper()
	devs := map[int]string{
		1: attachLoop(t, ext4ImageOf(t, map[string]string{"autoboot.txt": "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"})),
		2: attachLoop(t, ext4ImageOf(t, map[string]string{"pv_rev.txt": "0\n"})),
		3: attachLoop(t, ext4ImageOf(t, try)),
	}
	site, run, log := testSite(t, devs)
	r, err := site.place(log)
	if err != nil {
		t.Fatalf("place: %v", err)
	}
	r.BootDir, r.TrybootProperty = t.TempDir(), filepath.Join(t.TempDir(), "tryboot")
	if err := os.WriteFile(r.TrybootProperty, make([]byte, 4), 0o644); err != nil {
		t.Fatal(err)
	}
	return r, devs, run
}

//go:build integration

package integration

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/internal/revtest"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/storage"
)

// The storage fault cases of the reliability suite: the storage full, the
// storage read-only, the bootloader variables torn or overwritten. Each
// one puts a device's storage on a filesystem the test owns (a tmpfs in
// the test's own mount namespace, gone with it) so that the kernel's own
// ENOSPC and EROFS are met, not a fault hook.

// mib is a mebibyte.
const mib = 1 << 20

// storageOn copies the storage Build laid out at src onto a tmpfs of size
// (mount's syntax) and returns it. cp -a keeps the hard links between the
// trails and objects/, so the copy takes what the device's storage takes.
func storageOn(t *testing.T, src, size string) string {
	t.Helper()
	dir := isolated.Tmpfs(t, size)
	if out, err := exec.Command("cp", "-a", src+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("copy the storage onto a %s tmpfs: %v: %s", size, err, out)
	}
	return dir
}

// usedBytes is what the files under dir take on their filesystem.
func usedBytes(t *testing.T, dir string) int64 {
	t.Helper()
	out, err := exec.Command("du", "-s", "-B1", dir).Output()
	if err != nil {
		t.Fatalf("du %s: %v", dir, err)
	}
	var n int64
	if _, err := fmt.Sscan(string(out), &n); err != nil {
		t.Fatalf("du %s: %q: %v", dir, out, err)
	}
	return n
}

// freeBytes is the space left for writing on dir's filesystem.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fill makes the file path take all but leave bytes of its filesystem's
// free space; leave 0 fills it to the last block, whatever the device
// writes meanwhile. It returns the size given to the file.
func fill(t *testing.T, path string, leave int64) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var size int64
	// fallocate takes the blocks at once; in steps, so that what the
	// device writes meanwhile only shortens the last one.
	for step := int64(4 * mib); step >= 4096; step /= 2 {
		for {
			free := freeBytes(t, filepath.Dir(path)) - leave
			if free < step {
				break
			}
			err := syscall.Fallocate(int(f.Fd()), 0, size, step)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatalf("fallocate %s: %v", path, err)
			}
			size += step
		}
	}
	return size
}

// randomFile writes n random bytes into a new file outside the device's
// storage and returns its path and sha256: an object the device does not
// have.
func randomFile(t *testing.T, n int) (string, string) {
	t.Helper()
	data := make([]byte, n)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	path := filepath.Join(t.TempDir(), "object")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, hex.EncodeToString(sum[:])
}

// temporaries lists the dot files in dir: the temporaries the storage
// package writes before a rename (objects/.<sha>.tmp*, .<name>.tmp*).
func temporaries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names
}

// bigRevision exports, as steps install takes it, a revision whose one
// container's root image is the file image: a revision with an object of
// that size.
func bigRevision(t *testing.T, image string) string {
	t.Helper()
	dir := t.TempDir()
	c := revtest.Container{Name: "big", Group: "app", Cmd: echoer("big"), LXC: revtest.UpstreamLXC}
	groups := map[string]any{"groups": []any{map[string]any{"name": "app", "restart_policy": "container", "status_goal": "STARTED", "timeout": 30}}}
	if err := revtest.Build(dir, image, groups, []revtest.Container{c}); err != nil {
		t.Fatal(err)
	}
	tgz := filepath.Join(t.TempDir(), "big.tgz")
	if err := revtest.Export(dir, tgz); err != nil {
		t.Fatal(err)
	}
	return tgz
}

// sameRunning fails t unless sys, a and b run, STARTED, as the processes
// before named.
func (d *device) sameRunning(what string, before map[string]int) {
	d.t.Helper()
	m := map[string]messages.ContainerInfo{}
	for _, c := range d.containers() {
		m[c.Name] = c
	}
	for _, n := range []string{"sys", "a", "b"} {
		if m[n].Status != messages.StatusStarted || m[n].Pid != before[n] {
			d.t.Fatalf("%s: %s is %s pid %d, was STARTED pid %d", what, n, m[n].Status, m[n].Pid, before[n])
		}
	}
}

// alive fails t if the device's pantavisor exited.
func (d *device) alive(what string) {
	d.t.Helper()
	select {
	case <-d.exited:
		d.t.Fatalf("%s: pantavisor exited: %v\n%s", what, d.exitErr, d.output())
	default:
	}
}

// flooder prints to its console without end, as fast as the shell goes.
const flooder = `/bin/sh "-c" "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo flood-$i-flood-flood-flood-flood-flood-flood-flood-flood; done"`

// TestReliabilityStorageFull: the storage on a small filesystem.
//
// (a) An object larger than the space left, put through pvcontrol, then
// installed as a revision's image: each fails (non-zero exit, 507 "Not
// enough disk space"), nothing of it stays in objects/ or trails/ (neither
// the object, the trail nor a .<sha>.tmp* temporary), the storage passes
// Check, the device runs revision 0 with the same containers; once
// the filler file is gone, the same put succeeds.
//
// (b) A container flooding its console while the storage is full to the
// last block: the supervisor runs on, pvcontrol ls answers throughout,
// the other containers keep their processes, and the console is written
// again once space is freed.
func TestReliabilityStorageFull(t *testing.T) {
	isolated.Require(t)
	n := runs(t, 10, 2)
	var done, passed int
	var refused, stored int
	var lsDuringFlood int
	var slowestLs time.Duration
	record(t, "storage full: upload refused, console flood", &done, &passed, func() string {
		return fmt.Sprintf("%d puts and installs refused (507), %d puts stored after freeing; full disk under a console flood: ls answered %d times, slowest %v",
			refused, stored, lsDuringFlood, slowestLs.Round(time.Millisecond))
	})

	src := buildStorage(t, updateGroups(), updateCtrs("sys-0", echoer("b-0"), nil))
	// The revision, and 16 MiB for logs, progress and the uploads: the
	// filler takes the room the test does not want.
	size := usedBytes(t, src) + 16*mib
	dir := storageOn(t, src, fmt.Sprint(size))
	l := storage.Layout{Root: dir}
	d := startDeviceEnv(t, dir, commitDelay)
	before := pidsOf(d.waitUp("start on a small storage", 60*time.Second))
	filler := filepath.Join(dir, "filler")

	for i := 1; i <= n; i++ {
		done = i
		fill(t, filler, 2*mib)
		obj, sha := randomFile(t, 4*mib)
		out, code := d.pvcontrol("objects", "put", obj)
		if code == 0 || !strings.Contains(out, "Not enough disk space") || !strings.Contains(out, "507") {
			t.Fatalf("put %d: a 4 MiB object with 2 MiB free: exit %d: %s", i, code, out)
		}
		refused++
		if _, err := os.Stat(l.Object(sha)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("put %d: the refused object is in objects/: %v", i, err)
		}
		if tmps := temporaries(t, l.Objects()); len(tmps) != 0 {
			t.Fatalf("put %d: left in objects/: %v", i, tmps)
		}
		// The same object as a revision's root image, installed whole:
		// refused the same way, no trail and no temporary left.
		rev := fmt.Sprintf("locals/big%d", i)
		out, code = d.pvcontrol("steps", "install", bigRevision(t, obj), rev)
		if code == 0 || !strings.Contains(out, "Not enough disk space") || !strings.Contains(out, "507") {
			t.Fatalf("install %d: a revision with a 4 MiB object with 2 MiB free: exit %d: %s", i, code, out)
		}
		if _, err := os.Stat(l.Trail(rev)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("install %d: the refused revision is on disk: %v", i, err)
		}
		if tmps := append(temporaries(t, l.Objects()), temporaries(t, l.Trails())...); len(tmps) != 0 {
			t.Fatalf("install %d: left behind: %v", i, tmps)
		}
		refused++
		if err := l.Check(); err != nil {
			t.Fatalf("put %d: storage after the refusals: %v", i, err)
		}
		d.alive(fmt.Sprintf("put %d", i))
		d.sameRunning(fmt.Sprintf("put %d refused", i), before)
		if rev := d.runningRev("0"); rev != "0" {
			t.Fatalf("put %d: running %s", i, rev)
		}

		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		out, code = d.pvcontrol("objects", "put", obj)
		if code != 0 || strings.TrimSpace(out) != sha {
			t.Fatalf("put %d after freeing space: exit %d: %s", i, code, out)
		}
		stored++
		if err := l.Check(); err != nil {
			t.Fatalf("put %d: storage after the put: %v", i, err)
		}
		// The next round meets the same free space.
		if err := os.Remove(l.Object(sha)); err != nil {
			t.Fatal(err)
		}
		passed = i
	}
	if code := d.stop(30 * time.Second); code != 0 {
		t.Fatalf("stop: exit code %d", code)
	}

	// (b): a revision with a fourth container that floods its console.
	ctrs := append(updateCtrs("sys-0", echoer("b-0"), nil), ctr{name: "flood", group: "app", cmd: flooder})
	src = buildStorage(t, updateGroups(), ctrs)
	dir = storageOn(t, src, fmt.Sprint(usedBytes(t, src)+16*mib))
	d = startDeviceEnv(t, dir, commitDelay)
	before = pidsOf(d.waitUp("start with a flooder", 60*time.Second))
	d.waitConsole("flood", "flood-1000-", 30*time.Second)
	filler = filepath.Join(dir, "filler")
	fill(t, filler, 0)
	// Whatever the flooder wrote meanwhile: the disk stays full.
	fill(t, filler+"2", 0)
	if free := freeBytes(t, dir); free >= 64*1024 {
		t.Fatalf("the storage is not full: %d bytes free", free)
	}
	logs := filepath.Join(dir, "logs")
	full := usedBytes(t, logs)
	deadline := time.Now().Add(time.Duration(runs(t, 20, 5)) * time.Second)
	for time.Now().Before(deadline) {
		d.alive("console flood on a full disk")
		asked := time.Now()
		d.sameRunning("console flood on a full disk", before)
		// A supervisor stuck on a log write would answer late or never
		// (pvcontrol waits 240 s): the answer must come promptly.
		if took := time.Since(asked); took > 2*time.Second {
			t.Fatalf("pvcontrol ls took %v on a full disk under a console flood", took)
		} else {
			slowestLs = max(slowestLs, took)
		}
		lsDuringFlood++
		time.Sleep(200 * time.Millisecond)
	}
	if m := d.containers(); !flooding(m) {
		t.Fatalf("the flooder is not running: %+v", m)
	}
	os.Remove(filler)
	os.Remove(filler + "2")
	// The console goes on where space is back: the logs grow again (the
	// log keeper bounds them, far above this).
	grow := time.Now().Add(20 * time.Second)
	for usedBytes(t, logs) <= full {
		if time.Now().After(grow) {
			t.Fatalf("no log written within 20 s of freeing space (%d bytes)", full)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.sameRunning("after freeing space", before)
	if code := d.stop(30 * time.Second); code != 0 {
		t.Fatalf("stop after the flood: exit code %d", code)
	}
}

func flooding(cs []messages.ContainerInfo) bool {
	for _, c := range cs {
		if c.Name == "flood" {
			return c.Status == messages.StatusStarted
		}
	}
	return false
}

// remount makes the tmpfs at dir read-only or read-write again. The flag
// is the filesystem's (no MS_BIND): the device's mount namespace, a copy
// of this one, sees it too.
func remount(t *testing.T, dir string, readOnly bool) {
	t.Helper()
	flags := uintptr(syscall.MS_REMOUNT)
	if readOnly {
		flags |= syscall.MS_RDONLY
	}
	if err := syscall.Mount("", dir, "", flags, ""); err != nil {
		t.Fatalf("remount %s (read-only %v): %v", dir, readOnly, err)
	}
}

// tryStart runs pantavisor appengine on storage like startDeviceEnv, but
// an early exit is an outcome, not a failure: it returns the device and
// whether it exited before its control socket came up.
func tryStart(t *testing.T, dir string, env []string) (*device, bool) {
	t.Helper()
	d := launchDevice(t, dir, append([]string{}, env...))
	return d, d.waitSocket(30 * time.Second)
}

// TestReliabilityStorageReadOnly: the storage remounted read-only under a
// running device, and a device started on read-only storage.
//
// The storage is a tmpfs and logs/ a second one on it: the supervisor and
// the consoles hold their log files open for writing, and the kernel
// refuses to make a filesystem with writers read-only (EBUSY), as a
// device's storage with its logs apart would be.
//
// Running: an update install fails (non-zero exit, 507 "Storage is
// read-only"), nothing of it is kept, the running revision runs on with
// the same containers; once read-write again the same install succeeds;
// its run while read-only again fails the same way before anything
// changes (progress NEW, no pv_try), and read-write it runs (UPDATED).
//
// Starting on read-only storage (the spec allows running the committed
// revision or failing with a clear message; this is what the code does):
// with its logs writable, the committed revision runs, containers
// STARTED; with the logs read-only too, the start exits non-zero within
// 10 s naming the log file and "read-only file system", and is not
// started again. It never hangs.
func TestReliabilityStorageReadOnly(t *testing.T) {
	isolated.Require(t)
	n := runs(t, 5, 1)
	var done, passed int
	var refusals, updates int
	startOutcome := "not started"
	record(t, "storage read-only: install refused, start", &done, &passed, func() string {
		return fmt.Sprintf("%d installs and runs refused (507), %d updates after rw; start on ro storage: %s", refusals, updates, startOutcome)
	})

	src := buildStorage(t, updateGroups(), updateCtrs("sys-0", echoer("b-0"), nil))
	size := fmt.Sprint(usedBytes(t, src) + 32*mib)
	dir := storageOn(t, src, size)
	l := storage.Layout{Root: dir}
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", logs, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatalf("mount the logs tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(logs, syscall.MNT_DETACH) })

	d := startDeviceEnv(t, dir, commitDelay)
	before := pidsOf(d.waitUp("start", 60*time.Second))
	current := "0"
	for i := 1; i <= n; i++ {
		done = i
		name := fmt.Sprintf("ro%d", i)
		tgz := filepath.Join(t.TempDir(), "rev.tgz")
		if err := revtest.Export(buildStorage(t, updateGroups(), updateCtrs("sys-0", echoer("b-"+name), nil)), tgz); err != nil {
			t.Fatal(err)
		}
		remount(t, dir, true)
		out, code := d.pvcontrol("steps", "install", tgz, "locals/"+name)
		if code == 0 || !strings.Contains(out, "Storage is read-only") || !strings.Contains(out, "507") {
			t.Fatalf("install %d on read-only storage: exit %d: %s", i, code, out)
		}
		refusals++
		if _, err := os.Stat(l.Trail("locals/" + name)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("install %d: a refused revision is on disk: %v", i, err)
		}
		d.alive(fmt.Sprintf("install %d refused", i))
		d.sameRunning(fmt.Sprintf("install %d refused", i), before)
		if rev := d.runningRev(current); rev != current {
			t.Fatalf("install %d: running %s", i, rev)
		}

		remount(t, dir, false)
		if err := l.Check(); err != nil {
			t.Fatalf("install %d: storage after the refusal: %v", i, err)
		}
		if out, code := d.pvcontrol("steps", "install", tgz, "locals/"+name); code != 0 {
			t.Fatalf("install %d on read-write storage: exit %d: %s", i, code, out)
		}
		// Installed, then run while read-only: the run is refused, as
		// clearly, before anything changes.
		tryBefore := bootEnv(t, dir).Try()
		remount(t, dir, true)
		out, code = d.pvcontrol("cmd", "run", "locals/"+name)
		if code == 0 || !strings.Contains(out, "Storage is read-only") || !strings.Contains(out, "507") {
			t.Fatalf("run %d on read-only storage: exit %d: %s", i, code, out)
		}
		if p, ok := d.progress("locals/" + name); !ok || p.Status != storage.StatusNew {
			t.Fatalf("run %d refused: progress %+v (answered %v)", i, p, ok)
		}
		// pv_try untouched: an earlier round's non-reboot update leaves
		// its own (committed at the next boot), the refused run none.
		if env := bootEnv(t, dir); env.Try() != tryBefore {
			t.Fatalf("run %d refused: bootloader %v, pv_try was %q", i, env, tryBefore)
		}
		d.sameRunning(fmt.Sprintf("run %d refused", i), before)
		refusals++
		remount(t, dir, false)
		if out, code := d.pvcontrol("cmd", "run", "locals/"+name); code != 0 {
			t.Fatalf("run %d: exit %d: %s", i, code, out)
		}
		p, seen := d.waitProgress("locals/"+name, 60*time.Second)
		if p.Status != storage.StatusUpdated {
			t.Fatalf("update %d: %+v (seen %v)", i, p, seen)
		}
		updates++
		d.waitConsole("b", "b-"+name, 10*time.Second)
		before = pidsOf(d.waitUp(fmt.Sprintf("after update %d", i), 10*time.Second))
		current = "locals/" + name
		passed = i
	}
	// The reboot commits the last update: the revision a start on
	// read-only storage must run.
	if out, code := d.pvcontrol("cmd", "reboot", "commit"); code != 0 {
		t.Fatalf("reboot: exit %d: %s", code, out)
	}
	if p, _ := d.waitProgressStatus(current, storage.StatusDone, 60*time.Second); p.Msg != storage.MsgDone {
		t.Fatalf("commit of %s: %+v", current, p)
	}
	d.waitUp("after the commit", 30*time.Second)
	if code := d.stop(30 * time.Second); code != 0 {
		t.Fatalf("stop: exit code %d", code)
	}
	if env := bootEnv(t, dir); env.Committed() != current || env.Try() != "" {
		t.Fatalf("bootloader after the commit: %v", env)
	}

	// Read-only storage, its logs apart and writable: the committed
	// revision runs (trails/current is not updated: a warning).
	remount(t, dir, true)
	printed := strings.Count(d.console("b"), "b-"+current[len("locals/"):])
	d, exited := tryStart(t, dir, commitDelay)
	if exited {
		t.Fatalf("start on read-only storage with writable logs: exit %d:\n%s", d.cmd.ProcessState.ExitCode(), d.output())
	}
	d.waitUp("start on read-only storage", 60*time.Second)
	if rev := d.runningRev(current, "0"); rev != current {
		t.Fatalf("start on read-only storage runs %s, not the committed %s", rev, current)
	}
	d.alive("start on read-only storage")
	// b's word is printed once its shell has set its TERM trap: a
	// SIGTERM before that is lost (an init without a handler ignores it)
	// and the stop would wait for the 10 s kill.
	for deadline := time.Now().Add(10 * time.Second); strings.Count(d.console("b"), "b-"+current[len("locals/"):]) <= printed; {
		if time.Now().After(deadline) {
			t.Fatalf("b printed nothing on read-only storage with writable logs: %q", d.console("b"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := d.stop(30 * time.Second); code != 0 {
		t.Fatalf("stop on read-only storage: exit code %d", code)
	}
	startOutcome = "runs the committed revision with logs writable"

	// Read-only logs too: no log file can be opened, and the start ends
	// at once with the path and the kernel's "read-only file system" (the
	// host stage does not start it again: no loop).
	remount(t, logs, true)
	start := time.Now()
	d, exited = tryStart(t, dir, commitDelay)
	if !exited {
		t.Fatalf("start on read-only storage and logs: ran (control socket up):\n%s", d.output())
	}
	code, out, took := d.cmd.ProcessState.ExitCode(), d.output(), time.Since(start)
	if code == 0 || !strings.Contains(out, "read-only file system") || took > 10*time.Second {
		t.Fatalf("start on read-only storage and logs: exit %d after %v without naming the cause:\n%s", code, took, out)
	}
	startOutcome += fmt.Sprintf("; exit %d naming it with logs read-only", code)
	t.Logf("start on read-only storage and logs: exit %d after %v: %s", code, took.Round(time.Millisecond), out)
	remount(t, dir, false)
	remount(t, logs, false)
	if err := l.Check(); err != nil {
		t.Fatalf("storage after the read-only start: %v", err)
	}
}

// TestReliabilityBootEnvCorrupt: the appengine bootloader's variables
// (boot/appengine.txt) of a device past its factory revision, torn to 0
// bytes or overwritten with garbage, before a start.
//
// An empty file is an empty environment (AppEngine.Load: a device that
// never updated): the factory revision "0" runs. A file that is not
// key=value lines cannot name a revision either: the factory revision
// runs, with an error naming the file, and the variables are reset so
// that updates work again. Either way one start, all containers STARTED,
// no crash loop (one "pantavisor starting" over a few seconds), and the
// next update is installed and run.
func TestReliabilityBootEnvCorrupt(t *testing.T) {
	isolated.Require(t)
	n := runs(t, 5, 1)
	var done, passed int
	outcomes := map[string]int{}
	record(t, "bootloader env torn or garbage", &done, &passed, func() string {
		return fmt.Sprintf("factory revision run: %s", countList(outcomes))
	})

	dir := buildStorage(t, updateGroups(), updateCtrs("sys-0", echoer("b-0"), nil))
	l := storage.Layout{Root: dir}
	bl := bootloader.AppEngine{Dir: l.Boot()}
	// A revision besides the factory one, which each round's variables
	// name as the committed one (pv_rev), as a device that updated once.
	d := startDeviceEnv(t, dir, commitDelay)
	d.waitUp("first start", 60*time.Second)
	d.upload(buildStorage(t, updateGroups(), updateCtrs("sys-0", echoer("b-c"), nil)), "c")
	if out, code := d.pvcontrol("cmd", "run", "locals/c"); code != 0 {
		t.Fatalf("cmd run: %d %s", code, out)
	}
	if p, seen := d.waitProgress("locals/c", 60*time.Second); p.Status != storage.StatusUpdated {
		t.Fatalf("update: %+v %v", p, seen)
	}
	if code := d.stop(30 * time.Second); code != 0 {
		t.Fatalf("stop: %d", code)
	}
	// The baseline: whole variables run that revision, so the factory
	// one running below is the corruption's doing.
	if err := bl.Save(bootloader.Env{bootloader.VarRev: "locals/c"}); err != nil {
		t.Fatal(err)
	}
	d = startDeviceEnv(t, dir, commitDelay)
	d.waitUp("start on whole variables", 60*time.Second)
	if rev := d.runningRev("locals/c", "0"); rev != "locals/c" {
		t.Fatalf("whole variables naming locals/c: runs %s", rev)
	}
	if code := d.stop(30 * time.Second); code != 0 {
		t.Fatalf("stop: %d", code)
	}
	garbage := make([]byte, 4096)
	for i := 1; i <= n; i++ {
		done = i
		for _, c := range []struct {
			name string
			data func() []byte
		}{
			{"truncated", func() []byte { return nil }},
			{"garbage", func() []byte {
				// A first line no parser takes, then noise.
				_, _ = rand.Read(garbage)
				return append([]byte("\x00\xff not key value\n"), garbage...)
			}},
		} {
			what := fmt.Sprintf("round %d, %s", i, c.name)
			if err := bl.Save(bootloader.Env{bootloader.VarRev: "locals/c"}); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(l.Boot(), "appengine.txt"), c.data(), 0o644); err != nil {
				t.Fatal(err)
			}
			d := startDeviceEnv(t, dir, commitDelay)
			d.waitUp(what, 60*time.Second)
			if rev := d.runningRev("locals/c", "0"); rev != "0" {
				t.Fatalf("%s: runs %s, not the factory revision", what, rev)
			}
			d.waitConsole("b", "b-0", 10*time.Second)
			time.Sleep(2 * time.Second)
			d.alive(what)
			if k := strings.Count(d.output(), "pantavisor starting"); k != 1 {
				t.Fatalf("%s: %d starts: a crash loop", what, k)
			}
			// This start's own output: the log files hold the earlier ones.
			out := d.output()
			if c.name == "garbage" && lineIndex(out, "bootloader variables unreadable: variables reset", "appengine.txt", "booting=0") < 0 {
				t.Fatalf("%s: no log line names the unreadable variables:\n%s", what, out)
			}
			if lineIndex(out, "boot decision", "booted=0") < 0 {
				t.Fatalf("%s: no boot decision for the factory revision:\n%s", what, out)
			}
			// Updates work again: the variables are readable.
			env, err := bl.Load()
			if err != nil {
				t.Fatalf("%s: bootloader variables after the start: %v", what, err)
			}
			if env.Committed() != "0" || env.Try() != "" {
				t.Fatalf("%s: bootloader variables after the start: %v", what, env)
			}
			name := fmt.Sprintf("%s%d", c.name, i)
			d.upload(buildStorage(t, updateGroups(), updateCtrs("sys-0", echoer("b-"+name), nil)), name)
			if out, code := d.pvcontrol("cmd", "run", "locals/"+name); code != 0 {
				t.Fatalf("%s: cmd run: %d %s", what, code, out)
			}
			if p, seen := d.waitProgress("locals/"+name, 60*time.Second); p.Status != storage.StatusUpdated {
				t.Fatalf("%s: update: %+v %v", what, p, seen)
			}
			if code := d.stop(30 * time.Second); code != 0 {
				t.Fatalf("%s: stop: %d", what, code)
			}
			if err := l.Check(); err != nil {
				t.Fatalf("%s: storage: %v", what, err)
			}
			outcomes[c.name]++
		}
		passed = i
	}
}

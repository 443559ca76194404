package updater

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
	"github.com/pantavisor/pv/update"
)

// device is a storage in a temporary directory with the appengine
// bootloader, holding revisions "0" and "1" (valid, no containers).
func device(t *testing.T, env bootloader.Env) *Device {
	t.Helper()
	l := storage.Layout{Root: t.TempDir()}
	for _, rev := range []string{"0", "1"} {
		if err := l.InstallTrail(rev, []byte(`{"#spec":"pantavisor-service-system@1"}`), storage.InstallOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(l.Boot(), 0o755); err != nil {
		t.Fatal(err)
	}
	bl := bootloader.AppEngine{Dir: l.Boot()}
	if env != nil {
		if err := bl.Save(env); err != nil {
			t.Fatal(err)
		}
	}
	return &Device{Layout: l, Bootloader: bl, State: state.Options{AppEngine: true},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func (d *Device) mustEnv(t *testing.T) bootloader.Env {
	t.Helper()
	env, err := d.Bootloader.Load()
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func (d *Device) mustProgress(t *testing.T, rev string) storage.Progress {
	t.Helper()
	p, err := d.Layout.ReadProgress(rev)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStartFactory(t *testing.T) {
	d := device(t, nil)
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.Action != update.BootRun || b.Rev != "0" || !b.Factory || b.State == nil || b.Trying {
		t.Fatalf("boot %+v", b)
	}
	if p := d.mustProgress(t, "0"); p.Status != storage.StatusDone || p.Msg != storage.MsgFactory {
		t.Errorf("progress %+v", p)
	}
	if !d.Layout.Done("0") || d.Layout.CurrentRev() != "0" {
		t.Errorf("done %v current %q", d.Layout.Done("0"), d.Layout.CurrentRev())
	}
}

func TestStartTriesPendingUpdateAndStoresTheLatch(t *testing.T) {
	d := device(t, bootloader.Env{"pv_rev": "0", "pv_try": "1"})
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.Rev != "1" || !b.Trying || b.TryProgress == nil || b.TryProgress.Msg != storage.MsgTry || b.State == nil {
		t.Fatalf("boot %+v", b)
	}
	if env := d.mustEnv(t); env["pv_trying"] != "1" {
		t.Errorf("latch not stored: %v", env)
	}
	// A crash during the try: the next start falls back and records it.
	b, err = d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.Rev != "0" || b.Trying {
		t.Fatalf("second boot %+v", b)
	}
	if p := d.mustProgress(t, "1"); p.Status != storage.StatusError || p.Msg != storage.MsgRolledBack {
		t.Errorf("progress %+v", p)
	}
	if env := d.mustEnv(t); env.Try() != "" {
		t.Errorf("pv_try left: %v", env)
	}
}

// On a device the boot script says on the kernel command line which
// revision it booted, and that revision runs, not the one the variables
// alone name. The power cut this is about: U-Boot stored its latch
// (pv_trying, in its own environment) and booted the try, and the power
// went before Start stored the latch in uboot.txt. The next boot U-Boot
// falls back to the committed revision (kernel and board files of "0");
// uboot.txt still says "try 1, not attempted". Taking the variables' word
// ran revision 1's containers on revision 0's kernel, and committed it.
func TestStartRunsTheRevisionTheBootScriptBooted(t *testing.T) {
	d := device(t, nil)
	d.Bootloader = bootloader.Uboot{Dir: d.Layout.Boot()}
	if err := d.Bootloader.Save(bootloader.Env{"pv_rev": "0", "pv_try": "1"}); err != nil {
		t.Fatal(err)
	}
	d.BootedRev = "0"
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.Action != update.BootRun || b.Rev != "0" || b.Trying {
		t.Fatalf("boot %+v: want the committed revision 0 the bootloader fell back to", b)
	}
	if p := d.mustProgress(t, "1"); p.Status != storage.StatusError || p.Msg != storage.MsgRolledBack {
		t.Errorf("progress of the try %+v: want the rollback reported", p)
	}
	if env := d.mustEnv(t); env.Try() != "" || env.Committed() != "0" || env[bootloader.VarTrying] != "" {
		t.Errorf("variables %v: want pv_try cleared and no latch stored for a boot that did not try", env)
	}

	// The bootloader's word stands the other way too: it booted the try
	// (its own latch said not attempted) though uboot.txt holds a latch.
	// Revision 1 installed again since: its progress is new.
	if err := d.Layout.WriteProgress("1", storage.NewProgress(storage.StatusInProgress, storage.MsgTry)); err != nil {
		t.Fatal(err)
	}
	if err := d.Bootloader.Save(bootloader.Env{"pv_rev": "0", "pv_try": "1", "pv_trying": "1"}); err != nil {
		t.Fatal(err)
	}
	d.BootedRev = "1"
	if b, err = d.Start(); err != nil {
		t.Fatal(err)
	}
	if b.Rev != "1" || !b.Trying || b.State == nil {
		t.Fatalf("boot %+v: want revision 1 tried, as booted", b)
	}

	// Where both agree, the latch is stored as before.
	if err := d.Bootloader.Save(bootloader.Env{"pv_rev": "0", "pv_try": "1"}); err != nil {
		t.Fatal(err)
	}
	if b, err = d.Start(); err != nil {
		t.Fatal(err)
	}
	if env := d.mustEnv(t); b.Rev != "1" || !b.Trying || env[bootloader.VarTrying] != "1" {
		t.Fatalf("boot %+v, variables %v: want the try run and its latch stored", b, env)
	}
}

// Variables corrupt from Linux's view while the boot script booted
// revision 1 (pv_rev=1 on the command line): 1 runs, and is what the
// variables are reset to. Reset to none, they made the next boot run the
// factory revision 0 silently. (The review of 1685919 found it.)
func TestCorruptVariablesWithABootedRevision(t *testing.T) {
	d := corruptVariablesBooted(t, nil)
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if env := d.mustEnv(t); b.Rev != "1" || env.Committed() != "1" || env.Try() != "" {
		t.Errorf("runs %s, variables stored %v: want 1 run and stored as committed", b.Rev, env)
	}
}

// Variables corrupt while revision 1 was being tried (progress
// INPROGRESS, the boot script booted it): 1 is stored as the try, and
// tested, not as the committed revision it would have become untested.
// (The second review found it in 6b584c7.)
func TestCorruptVariablesDuringATry(t *testing.T) {
	d := corruptVariablesBooted(t, ptr(storage.NewProgress(storage.StatusInProgress, storage.MsgTry)))
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if env := d.mustEnv(t); b.Rev != "1" || !b.Trying || env.Try() != "1" || env.Committed() != "0" {
		t.Errorf("boot %s trying %v, variables %v: want 1 tried, the factory revision to fall back to", b.Rev, b.Trying, env)
	}
}

func TestStartRollsBackAFailedTry(t *testing.T) {
	d := device(t, bootloader.Env{"pv_rev": "0", "pv_try": "1"})
	if err := d.Layout.WriteProgress("1", storage.NewProgress(storage.StatusError, storage.MsgContainerFailed)); err != nil {
		t.Fatal(err)
	}
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.Action != update.BootRollback || b.Reboot == "" || b.State != nil {
		t.Fatalf("boot %+v", b)
	}
	if env := d.mustEnv(t); env.Try() != "" {
		t.Errorf("pv_try left: %v", env)
	}
}

func TestStartFailsATryWhoseStateIsGone(t *testing.T) {
	d := device(t, bootloader.Env{"pv_rev": "0", "pv_try": "2"})
	if err := os.MkdirAll(filepath.Join(d.Layout.Trail("2"), ".pv"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.Reboot == "" || b.State != nil {
		t.Fatalf("boot %+v", b)
	}
	if p := d.mustProgress(t, "2"); p.Status != storage.StatusError || p.Msg != storage.MsgNoStateJSON {
		t.Errorf("progress %+v", p)
	}
	if env := d.mustEnv(t); env.Try() != "" {
		t.Errorf("pv_try left: %v", env)
	}
}

// The factory revision run again while "1" is committed, whose state no
// longer loads, fails its try and rolls back to "1"; before, it entered
// safe mode, every container stopped with a working revision committed.
func TestStartRollsBackAFactoryTryWithAnotherCommitted(t *testing.T) {
	d := device(t, bootloader.Env{"pv_rev": "1", "pv_try": "0"})
	if err := os.Remove(filepath.Join(d.Layout.Trail("0"), ".pvr", "json")); err != nil {
		t.Fatal(err)
	}
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.Reboot == "" || b.SafeMode != "" || b.State != nil {
		t.Fatalf("boot %+v", b)
	}
	if p := d.mustProgress(t, "0"); p.Status != storage.StatusError || p.Msg != storage.MsgNoStateJSON {
		t.Errorf("progress %+v", p)
	}
	if env := d.mustEnv(t); env.Try() != "" || env.Committed() != "1" {
		t.Errorf("env %v", env)
	}
}

// A revision committed before is run again (LOCAL_RUN) and the power is
// cut after pv_try is set but before its INPROGRESS is written: its
// progress still says DONE, from its earlier commit. The boot tries it
// again, and the revision committed since stays committed to fall back
// to. Before, the stale DONE was taken for a commit cut short, and the
// revision was committed untested, the fallback lost.
func TestStartTriesAgainARevisionWhoseDoneIsStale(t *testing.T) {
	d := device(t, bootloader.Env{"pv_rev": "2", "pv_try": "1"})
	if err := d.Layout.WriteProgress("1", storage.NewProgress(storage.StatusDone, storage.MsgDone)); err != nil {
		t.Fatal(err)
	}
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if b.Rev != "1" || !b.Trying {
		t.Fatalf("boot %+v: want a try of 1", b)
	}
	if env := d.mustEnv(t); env.Committed() != "2" || env.Try() != "1" {
		t.Errorf("bootloader %v: want 2 committed and 1 tried", env)
	}
	if p := d.mustProgress(t, "1"); p.Status != storage.StatusInProgress {
		t.Errorf("progress of 1: %+v, want INPROGRESS", p)
	}
}

// Variables torn or overwritten (not key=value lines) name no revision:
// the start boots the factory revision instead of failing, and writes them
// anew so that the next install can arm a try.
func TestStartBootsTheFactoryRevisionOnCorruptVariables(t *testing.T) {
	for name, data := range map[string]string{
		"garbage": "\x00\xff\x13 not key value\n",
		"torn":    "pv_rev=1\npv_tr",
	} {
		t.Run(name, func(t *testing.T) {
			d := device(t, bootloader.Env{"pv_rev": "1"})
			if err := os.WriteFile(filepath.Join(d.Layout.Boot(), "appengine.txt"), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Bootloader.Load(); !errors.Is(err, bootloader.ErrCorrupt) {
				t.Fatalf("load: %v, want ErrCorrupt", err)
			}
			b, err := d.Start()
			if err != nil {
				t.Fatal(err)
			}
			if b.Action != update.BootRun || b.Rev != "0" || b.State == nil || b.Trying {
				t.Fatalf("boot %+v", b)
			}
			if env := d.mustEnv(t); env.Committed() != "0" || env.Try() != "" {
				t.Fatalf("variables after the start: %v", env)
			}
			if _, err := d.Bootloader.Install("1"); err != nil {
				t.Fatalf("install after the reset: %v", err)
			}
			if env := d.mustEnv(t); env.Try() != "1" {
				t.Fatalf("variables after the install: %v", env)
			}
		})
	}
}

// A supervisor started again resumes what runs: no boot decision, the
// bootloader and progress untouched; a try is resumed only while its
// progress says so; a try of another revision the bootloader holds is a
// reboot still due; what half-done writes left goes.
func TestResume(t *testing.T) {
	d := device(t, bootloader.Env{"pv_rev": "0", "pv_try": "1", "pv_trying": "1"})
	if err := d.WriteProgress("1", storage.NewProgress(storage.StatusTesting, storage.MsgTestingReboot)); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(d.Layout.Objects(), "."+strings.Repeat("ab", 32)+".tmp123")
	if err := os.MkdirAll(filepath.Dir(leftover), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(leftover, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := d.mustEnv(t)
	b, err := d.Resume("1", true)
	if err != nil {
		t.Fatal(err)
	}
	if b.Rev != "1" || !b.Trying || b.TryProgress == nil || b.TryProgress.Status != storage.StatusTesting || b.State == nil || b.Reboot != "" {
		t.Errorf("resume of a try: %+v", b)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("half-done write left: %v", err)
	}
	if env := d.mustEnv(t); !maps.Equal(env, before) {
		t.Errorf("bootloader changed: %v, was %v", env, before)
	}
	// Committed since: no try any more.
	if err := d.WriteProgress("1", storage.NewProgress(storage.StatusDone, storage.MsgDone)); err != nil {
		t.Fatal(err)
	}
	if b, err = d.Resume("1", true); err != nil || b.Trying {
		t.Errorf("resume after the commit: %+v %v", b, err)
	}
	// Revision 0 runs while the bootloader holds a try of 1: the reboot
	// into it is still due.
	if b, err = d.Resume("0", false); err != nil || b.Reboot == "" || b.Trying {
		t.Errorf("resume with a reboot due: %+v %v", b, err)
	}
	if _, err := d.Resume("9", false); err == nil {
		t.Error("resume of a revision that is not there: no error")
	}
}

// A U-Boot environment with no valid copy (never saved: U-Boot runs on its
// built-in default one) boots the factory revision and is left as it is:
// writing ours would replace U-Boot's own variables. An install is refused
// with the reason. Before, Start failed, and the supervisor with it at
// every boot.
func TestStartWithNoValidUbootEnvBootsTheFactoryRevision(t *testing.T) {
	d := device(t, nil)
	envFile := filepath.Join(t.TempDir(), "uboot.env")
	if err := os.WriteFile(envFile, make([]byte, 0x1000), 0o644); err != nil {
		t.Fatal(err)
	}
	d.Bootloader = bootloader.UbootEnv{Copies: []bootloader.EnvCopy{{Device: envFile, Size: 0x1000}}}
	b, err := d.Start()
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if b.Rev != "0" || b.Trying {
		t.Errorf("boot %+v: want the factory revision", b)
	}
	if data, err := os.ReadFile(envFile); err != nil || !bytes.Equal(data, make([]byte, 0x1000)) {
		t.Errorf("the environment was written (%v)", err)
	}
	if _, err := d.Install("1"); !errors.Is(err, bootloader.ErrNoValidCopy) {
		t.Errorf("install: %v, want an error naming the environment", err)
	}
}

// Variables corrupt while the boot script booted revision 1, whose try
// already failed (progress ERROR): 1 is not stored as committed, it is
// rolled back. (The third review.)
func TestCorruptVariablesAfterAFailedTry(t *testing.T) {
	d := corruptVariablesBooted(t, ptr(storage.NewProgress(storage.StatusError, storage.MsgContainerFailed)))
	b, err := d.Start()
	if err != nil {
		t.Fatal(err)
	}
	if env := d.mustEnv(t); env.Committed() == "1" || b.Reboot == "" {
		t.Errorf("boot %s action %v reboot %q, variables %v: want the failed try rolled back, never committed", b.Rev, b.Action, b.Reboot, env)
	}
}

// corruptVariablesBooted is a device on uboot.txt whose variables are
// corrupt, with revision 1's progress p (none when nil), and the boot
// script saying it booted revision 1.
func corruptVariablesBooted(t *testing.T, p *storage.Progress) *Device {
	t.Helper()
	d := device(t, nil)
	d.Bootloader = bootloader.Uboot{Dir: d.Layout.Boot()}
	if p != nil {
		if err := d.WriteProgress("1", *p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d.Layout.Boot(), "uboot.txt"), []byte("pv_rev\x00garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Bootloader.Load(); !errors.Is(err, bootloader.ErrCorrupt) {
		t.Fatalf("load: %v, want ErrCorrupt", err)
	}
	d.BootedRev = "1"
	return d
}

func ptr[T any](v T) *T { return &v }

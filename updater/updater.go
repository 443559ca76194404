// Package updater carries out on the device what package update decides:
// it reads and writes the storage (progress, done flags, trails/current)
// and the bootloader variables. Device implements actors.Updates, which
// root drives during an update; Device.Start is the boot-time part
// (upstream's pv_update_resume and the boot script's try-once latch).
package updater

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
	"github.com/pantavisor/pv/update"
)

// Device is the storage and bootloader of one device.
type Device struct {
	Layout     storage.Layout
	Bootloader bootloader.Backend
	// State are the options revisions are loaded with.
	State state.Options
	Log   *slog.Logger
	// BootedRev is the revision the bootloader says it booted: on a
	// device, the kernel command line's pv_rev=, which the boot script
	// sets from the variables it acted on (upstream's runtime pv_rev).
	// Empty where nothing says it (appengine, a kernel started without a
	// Pantavisor boot script): Start works it out from the variables, as
	// such a script would (Booted).
	BootedRev string
}

// Booted returns the revision this boot runs and the variables to store
// before it runs. Without said (what the bootloader says it booted), both
// come from env as a try-once boot script decides (bootloader.Env.Boot).
// With it, said stands: the kernel and the board files running are that
// revision's, whatever the variables say. Where the two disagree, the
// script decided on variables other than env (a power cut after its latch
// and before Start stored its own, or a latch kept elsewhere, as U-Boot's
// own environment keeps it for uboot.txt), and nothing is written:
// update.Resume reads the disagreement (a try the bootloader fell back
// from, or one it booted again).
func Booted(env bootloader.Env, said string) (rev string, next bootloader.Env) {
	rev, next = env.Boot()
	if said == "" || said == rev {
		return rev, next
	}
	return said, env
}

// Running returns the revision this boot runs and the variables to store
// before it runs. A backend that knows by itself (bootloader.Runner:
// rpiab's firmware is the latch) says it, and nothing is to be stored;
// its word stands over said, as upstream's validate_state overrides the
// kernel command line's pv_rev. Otherwise it is Booted.
func Running(bl bootloader.Backend, env bootloader.Env, said string) (rev string, next bootloader.Env, err error) {
	r, ok := bl.(bootloader.Runner)
	if !ok {
		rev, next = Booted(env, said)
		return rev, next, nil
	}
	rev, err = r.Running(env)
	if err != nil {
		return "", env, fmt.Errorf("which revision this boot runs: %w", err)
	}
	return rev, env, nil
}

// Load reads and validates rev's state; an error wraps fs.ErrNotExist
// when rev has no state JSON.
func (d *Device) Load(rev string) (*state.State, error) {
	if err := storage.CheckRev(rev); err != nil {
		return nil, err
	}
	trail := d.Layout.Trail(rev)
	if _, err := os.Stat(filepath.Join(trail, ".pvr", "json")); err != nil {
		return nil, fmt.Errorf("load revision %s: %w", rev, err)
	}
	st, err := state.LoadTrail(trail, d.State)
	if err != nil {
		return nil, fmt.Errorf("load revision %s: %w", rev, err)
	}
	return st, nil
}

// Progress reads rev's progress; nil when it has none.
func (d *Device) Progress(rev string) (*storage.Progress, error) {
	p, err := d.Layout.ReadProgress(rev)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// WriteProgress replaces rev's progress.
func (d *Device) WriteProgress(rev string, p storage.Progress) error {
	return d.Layout.WriteProgress(rev, p)
}

// MarkDone writes rev's done flag.
func (d *Device) MarkDone(rev string) error { return d.Layout.MarkDone(rev) }

// SetCurrent points trails/current at rev.
func (d *Device) SetCurrent(rev string) error { return d.Layout.SetCurrent(rev) }

// Install arms rev to be tried at the next boot (pv_try). An error after
// which pv_try=rev is stored all the same is no error (confirm): the next
// boot tries rev. reboot is true then, as the backend's own answer went
// with its error, and a reboot starts a try on every backend.
func (d *Device) Install(rev string) (bool, error) {
	reboot, err := d.Bootloader.Install(rev)
	if err == nil {
		return reboot, nil
	}
	installed := func(e bootloader.Env) bool { return e.IsInstalled(rev) }
	if c, ok := d.Bootloader.(bootloader.InstallChecker); ok {
		installed = func(e bootloader.Env) bool { ok, err := c.Installed(e, rev); return ok && err == nil }
	}
	if err := d.confirm("install revision "+rev, err, installed); err != nil {
		return false, err
	}
	return true, nil
}

// Commit makes rev the committed revision. An error after which rev is
// stored as committed all the same is no error (confirm).
func (d *Device) Commit(rev string) error {
	return d.confirm("commit revision "+rev, d.Bootloader.Commit(rev),
		func(e bootloader.Env) bool { return e.IsCommitted(rev) })
}

// Fail drops the pending update. An error after which no pv_try is
// stored all the same is no error (confirm).
func (d *Device) Fail() error {
	return d.confirm("fail update", d.Bootloader.Fail(), bootloader.Env.IsFailed)
}

// confirm is bootloader.Confirm for the step what, logging a step whose
// error is overruled by what is stored.
func (d *Device) confirm(what string, err error, done func(bootloader.Env) bool) error {
	if err == nil {
		return nil
	}
	cerr := bootloader.Confirm(d.Bootloader, err, done)
	if cerr == nil {
		d.Log.Error(what+": the bootloader returned an error, but the variables read back show it done: going on as done", "err", err)
	}
	return cerr
}

// Env returns pv_rev (the factory revision when unset) and pv_try.
func (d *Device) Env() (committed, tried string, err error) {
	env, err := d.Bootloader.Load()
	if err != nil {
		return "", "", err
	}
	return env.Committed(), env.Try(), nil
}

// Boot is what Start found and decided: the revision to run, or why none
// runs.
type Boot struct {
	update.Boot
	// State is Rev's state when Action is update.BootRun and it loaded.
	State *state.State
	// TryProgress is Rev's progress when it is tried (Boot.Trying).
	TryProgress *storage.Progress
	// Reboot, when set, says why the device must reboot at once without
	// running anything: the tried revision failed, pv_try is cleared, and
	// the next boot runs the committed revision; or a commit cut short
	// was finished (rpiab), and the next boot runs it.
	Reboot string
	// SafeMode, when set, says why nothing runs: the control socket stays
	// up with no containers.
	SafeMode string
	// Recovered are the leftovers of interrupted writes that storage
	// removed.
	Recovered []string
}

// Start is the boot of the device: storage removes what interrupted
// writes left, the booted revision is found (Running: the backend's own
// word, rpiab's, or the try-once latch, stored here for bootloaders that
// run no boot script: appengine), update.Resume decides from
// the bootloader variables and the progress on disk, and its decision is
// recorded in the order it asks for (progress, done flag, bootloader)
// before the revision is loaded. A revision under test that does not load
// is a failed try (rolled back); a committed one that does not load runs
// nothing (safe mode), rather than reboot in a loop.
func (d *Device) Start() (Boot, error) {
	var b Boot
	rec, err := d.Layout.Recover()
	b.Recovered = rec
	if err != nil {
		d.Log.Warn("storage recovery incomplete", "err", err)
	}
	env, err := d.Bootloader.Load()
	if errors.Is(err, bootloader.ErrNoValidCopy) {
		// A U-Boot environment never saved, or erased: U-Boot boots
		// with its built-in default one, which names no revision, so
		// the factory revision runs. Nothing is written: a Save would
		// replace U-Boot's built-in variables (bootcmd among them) by
		// ours alone. Installs fail on the same error until the
		// environment has been saved once (saveenv, fw_setenv).
		d.Log.Error("no valid copy of the U-Boot environment: booting the factory revision; updates are refused until the environment is saved once", "err", err)
		env = bootloader.Env{}
	} else if errors.Is(err, bootloader.ErrCorrupt) {
		// Nothing in them names a revision: the factory one is the only
		// one known to be there (GC keeps it), unless the boot script
		// says which it booted: that one runs, and is stored, or the
		// next boot would silently run another. Stored as committed,
		// unless its progress says it is under test or failed its try
		// (underTest): then as the try, to be tested or rolled back (to
		// the factory revision, the only one known to be there). They are written anew, or every
		// install and commit would meet the same error.
		env = bootloader.Env{}
		if d.BootedRev != "" {
			env[bootloader.VarRev] = d.BootedRev
			if d.underTest(d.BootedRev) {
				env = bootloader.Env{bootloader.VarTry: d.BootedRev}
			}
		}
		d.Log.Error("bootloader variables unreadable: variables reset", "err", err, "booting", env.Committed())
		if err := d.Bootloader.Save(env); err != nil {
			d.Log.Error("reset the bootloader variables", "err", err)
		}
	} else if err != nil {
		return b, fmt.Errorf("read bootloader variables: %w", err)
	}
	if env[bootloader.VarRev] == "" {
		env = d.committedFromBootFiles(env)
	}
	booted, next, err := Running(d.Bootloader, env, d.BootedRev)
	if err != nil {
		return d.unknownBoot(b, env, err), nil
	}
	d.noteDisagreement(env, booted)
	if !maps.Equal(env, next) {
		// Stored before the try runs: a crash during it must fall back.
		if err := d.Bootloader.Save(next); err != nil {
			return b, fmt.Errorf("store the try-once latch: %w", err)
		}
	}
	concerned := update.Concerned(env, booted)
	p, err := d.Progress(concerned)
	if err != nil {
		d.Log.Warn("read update progress", "rev", concerned, "err", err)
	}
	b.Boot = update.Resume(env, booted, p)
	d.Log.Info("boot decision", "booted", booted, "action", b.Action, "rev", b.Rev, "why", b.Why)
	if err := d.apply(b.Boot); err != nil {
		return b, err
	}
	switch b.Action {
	case update.BootRollback:
		b.Reboot = "tried revision " + b.Rev + " already failed: back to the committed revision"
		return b, nil
	case update.BootSafeMode:
		b.SafeMode = "factory revision " + b.Rev + " failed its try"
		return b, nil
	}
	st, err := d.Load(b.Rev)
	if err != nil {
		for _, pr := range state.Problems(err) {
			d.Log.Error("invalid revision", "rev", b.Rev, "problem", pr.String())
		}
		return d.unloadable(b, env.Committed(), err), nil
	}
	b.State = st
	if b.Trying {
		b.TryProgress = b.Progress
		if b.TryProgress == nil {
			tp := storage.NewProgress(storage.StatusInProgress, storage.MsgTry)
			b.TryProgress = &tp
		}
	}
	if err := d.SetCurrent(b.Rev); err != nil {
		d.Log.Warn("point trails/current at the running revision", "rev", b.Rev, "err", err)
	}
	return b, nil
}

// committedFromBootFiles returns env, which names no committed
// revision, with the one the backend's boot files name
// (bootloader.CommittedLister: rpiab), stored. A commit always stores
// pv_rev, so it is missing only where nothing was ever committed (the
// normal boot's partition then lists the factory revision, or nothing,
// and env is left as it is) or where the variables were lost: rpiab.txt
// corrupt and reset with no pv_rev on the command line (an rpiab boot
// image, shared by the revisions its partition lists, carries none),
// zeroed or gone. Read as the factory revision, the committed one's
// partition was taken for a commit of the factory revision cut short,
// which the boot "finished" by switching autoboot.txt back to the
// factory partition: the device ran revision 0, and the committed
// revision was left to the automatic GC.
func (d *Device) committedFromBootFiles(env bootloader.Env) bootloader.Env {
	l, ok := d.Bootloader.(bootloader.CommittedLister)
	if !ok {
		return env
	}
	rev, err := l.ListedCommitted()
	if err != nil || rev == bootloader.FactoryRev {
		return env
	}
	d.Log.Error("the bootloader variables name no committed revision: the partition a normal boot loads lists one, stored as committed", "rev", rev)
	n := bootloader.Env{}
	maps.Copy(n, env)
	n[bootloader.VarRev] = rev
	if err := d.Bootloader.Save(n); err != nil {
		d.Log.Error("store the committed revision", "rev", rev, "err", err)
	}
	return n
}

// underTest says whether corrupt variables are to be reset with rev, the
// booted revision, as the try rather than as committed: its progress says
// an update of it is under way or has failed (stored as the try, it is
// tested, or rolled back at once). Not for a backend that tells the boot
// by itself (rpiab): a normal boot with pv_try set is a rollback to it,
// whatever partition booted.
func (d *Device) underTest(rev string) bool {
	if _, ok := d.Bootloader.(bootloader.Runner); ok {
		return false
	}
	p, _ := d.Progress(rev)
	return update.Ongoing(p) || (p != nil && p.Status.Failed())
}

// noteDisagreement logs a booted revision other than the one the boot's
// other witness names: for a bootloader.Runner the kernel command line,
// for the others the variables' latch.
func (d *Device) noteDisagreement(env bootloader.Env, booted string) {
	if _, ok := d.Bootloader.(bootloader.Runner); ok {
		if d.BootedRev != "" && d.BootedRev != booted {
			d.Log.Warn("the kernel command line names another revision than the bootloader booted: the booted one runs",
				"booted", booted, "cmdline", d.BootedRev)
		}
		return
	}
	if own, _ := env.Boot(); own != booted {
		d.Log.Warn("the bootloader booted another revision than its variables name: the booted one runs",
			"booted", booted, "variables", own, "pv_rev", env.Committed(), "pv_try", env.Try(), "pv_trying", env[bootloader.VarTrying])
	}
}

// unknownBoot decides a boot whose revision the bootloader cannot tell
// (Running's err): nothing runs. A commit cut short before the backend's
// own step is finished, and the device reboots into the committed
// revision, once the backend reads back a boot it can tell: the commit's
// error alone says nothing here (the variables already show the commit,
// so Confirm would take any error for done), and a reboot on a commit that
// did not take would meet the same files at every boot. Anything else is
// safe mode with the reason, never a reboot into the same question.
func (d *Device) unknownBoot(b Boot, env bootloader.Env, err error) Boot {
	committed := env.Committed()
	if try := env.Try(); try != "" && errors.Is(err, bootloader.ErrTryUnreadable) {
		return d.unreadableTry(b, try, committed, err)
	}
	b.Boot = update.Boot{Action: update.BootSafeMode, Rev: committed, Why: err.Error()}
	if !errors.Is(err, bootloader.ErrCommitUnfinished) {
		b.SafeMode = "the bootloader cannot tell which revision it booted: " + err.Error()
		return b
	}
	d.Log.Warn("the commit of the last update stopped before the bootloader's own step: finishing it", "rev", committed, "err", err)
	if cerr := d.Bootloader.Commit(committed); cerr != nil {
		b.SafeMode = fmt.Sprintf("finish the commit of revision %s: %v", committed, cerr)
		return b
	}
	if _, rerr := d.Bootloader.(bootloader.Runner).Running(env); rerr != nil {
		b.SafeMode = fmt.Sprintf("the commit of revision %s was finished, yet the bootloader still cannot tell its boot: %v", committed, rerr)
		return b
	}
	b.Action, b.Why = update.BootRun, "commit finished"
	b.Reboot = "the commit of revision " + committed + " was finished: rebooting into it"
	return b
}

// unreadableTry decides a tryboot of revision try whose boot partition
// cannot be read (bootloader.ErrTryUnreadable, err): the try failed. Its
// progress says so, pv_try is dropped and the device reboots, into a
// normal boot of committed (the firmware's tryboot is one-shot), or, for
// the factory revision with nothing to roll back to, enters safe mode.
// Safe mode for every such try left a device with no containers until
// someone rebooted it, where the reboot is known to recover.
func (d *Device) unreadableTry(b Boot, try, committed string, err error) Boot {
	why := fmt.Sprintf("tried revision %s: %v", try, err)
	d.Log.Error("the try cannot read its boot partition: it failed", "rev", try, "err", err)
	p, perr := d.Progress(try)
	if perr != nil {
		d.Log.Warn("read update progress", "rev", try, "err", perr)
	}
	d.failTry(try, p, storage.MsgInternalError)
	b.Boot = update.Boot{Action: update.BootRollback, Rev: committed, Why: why}
	if update.OnFailure(try, committed, true) == update.RecoverSafeMode {
		b.Action, b.SafeMode = update.BootSafeMode, why
		return b
	}
	b.Reboot = why + ": back to the committed revision"
	return b
}

// failTry ends the try of rev: its progress (p, or a new one) ERROR with
// msg, then pv_try dropped. Errors are logged: the caller reboots or
// enters safe mode all the same.
func (d *Device) failTry(rev string, p *storage.Progress, msg string) {
	np := storage.NewProgress(storage.StatusError, msg)
	if p != nil {
		np = *p
		np.Status, np.Msg, np.Progress = storage.StatusError, msg, storage.StatusError.Percent()
	}
	if werr := d.WriteProgress(rev, np); werr != nil {
		d.Log.Error("write progress", "rev", rev, "err", werr)
	}
	if ferr := d.Fail(); ferr != nil {
		d.Log.Error("clear pv_try", "err", ferr)
	}
}

// apply records a boot decision in the order update.Boot asks for.
func (d *Device) apply(b update.Boot) error {
	if b.Progress != nil {
		if err := d.WriteProgress(b.ProgressRev, *b.Progress); err != nil {
			return fmt.Errorf("write progress of %s: %w", b.ProgressRev, err)
		}
	}
	if b.MarkDone {
		if err := d.MarkDone(b.Rev); err != nil {
			d.Log.Warn("mark revision done", "rev", b.Rev, "err", err)
		}
	}
	if b.Fail {
		if err := d.Fail(); err != nil {
			return fmt.Errorf("clear pv_try: %w", err)
		}
	}
	return nil
}

// unloadable decides about a revision whose state does not load: a try
// fails (its progress says why) and rolls back to committed, or enters
// safe mode for the factory revision with nothing to roll back to; a
// committed revision runs nothing.
func (d *Device) unloadable(b Boot, committed string, err error) Boot {
	why := fmt.Sprintf("revision %s cannot run: %v", b.Rev, err)
	if !b.Trying {
		b.SafeMode = why
		return b
	}
	msg := storage.MsgNoParse
	if errors.Is(err, fs.ErrNotExist) {
		msg = storage.MsgNoStateJSON
	}
	d.failTry(b.Rev, b.Progress, msg)
	if update.OnFailure(b.Rev, committed, true) == update.RecoverSafeMode {
		b.SafeMode = why
		return b
	}
	b.Reboot = why + ": back to the committed revision"
	return b
}

// Resume is Start for a supervisor that PID 1 started again while the
// device runs rev (the previous supervisor died): nothing is decided and
// nothing is written but the removal of half-done writes, the revision is
// only loaded. It is under test when trying was recorded and its progress
// on disk still says so. Reboot is set when the bootloader holds a try of
// another revision: the reboot into it the previous supervisor began is
// still due (the caller carries it out in order, once it re-adopted).
func (d *Device) Resume(rev string, trying bool) (Boot, error) {
	b := Boot{Boot: update.Boot{Action: update.BootRun, Rev: rev, Why: "the supervisor started again: the running revision goes on"}}
	// Nothing writes to storage yet: what the dead supervisor's writes
	// left half-done goes, as at boot.
	rec, err := d.Layout.Recover()
	b.Recovered = rec
	if err != nil {
		d.Log.Warn("storage recovery incomplete", "err", err)
	}
	// A try the bootloader holds for another revision: the previous
	// supervisor was on its way to reboot into it.
	if env, err := d.Bootloader.Load(); err == nil && env.Try() != "" && env.Try() != rev {
		b.Reboot = "the previous supervisor was rebooting into revision " + env.Try()
	}
	st, err := d.Load(rev)
	if err != nil {
		return b, fmt.Errorf("load running revision %s: %w", rev, err)
	}
	b.State = st
	if trying {
		p, err := d.Progress(rev)
		if err != nil {
			d.Log.Warn("read update progress", "rev", rev, "err", err)
		}
		if update.Ongoing(p) {
			b.Trying, b.TryProgress = true, p
		}
	}
	return b, nil
}

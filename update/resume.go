package update

import (
	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/storage"
)

// BootAction is what a boot does after Resume.
type BootAction int

// The boot actions.
const (
	// BootRun runs Boot.Rev.
	BootRun BootAction = iota
	// BootRollback runs nothing: the tried revision already failed, so
	// pv_try is cleared and the device reboots into the committed
	// revision (RecoverRollback).
	BootRollback
	// BootSafeMode runs nothing: the failed revision is the factory one,
	// with nothing to roll back to (RecoverSafeMode, SPEC §4).
	BootSafeMode
)

func (a BootAction) String() string {
	switch a {
	case BootRun:
		return "run"
	case BootRollback:
		return "rollback"
	case BootSafeMode:
		return "safe mode"
	}
	return "unknown boot action"
}

// Boot is the boot-time decision of Resume. The caller carries it out in
// this order: write Progress to ProgressRev's trail, mark Rev done (MarkDone),
// then clear pv_try (Fail), then act. Each step is
// idempotent and Resume decides the same again from what a crash leaves
// behind, so a crash between the steps only repeats them.
type Boot struct {
	Action BootAction
	// Rev is the revision to run, or the one that failed with
	// BootRollback and BootSafeMode.
	Rev string
	// Trying says Rev is an update under test: the try/commit loop (Next)
	// runs for it, starting from Progress.
	Trying bool
	// Factory says Rev is the factory revision "0" run with no update:
	// no testing and no commit timer.
	Factory bool
	// Progress is the progress to write, nil when it stays as it is.
	Progress *storage.Progress
	// ProgressRev is the revision Progress belongs to: Concerned(env,
	// booted), which is not Rev when the bootloader fell back.
	ProgressRev string
	// MarkDone asks for Rev's .pv/done flag.
	MarkDone bool
	// Fail asks to clear pv_try (upstream's pv_bootloader_fail_update).
	Fail bool
	// Why says in words which case this is, for the log.
	Why string
}

// Concerned returns the revision whose progress Resume needs: the one in
// pv_try when an update is pending, else the booted one.
func Concerned(env bootloader.Env, booted string) string {
	if t := env.Try(); t != "" {
		return t
	}
	return booted
}

// Resume is upstream's pv_update_resume: at boot, from the bootloader
// variables as loaded (env), the revision the bootloader booted and the
// progress on disk of Concerned(env, booted) (nil when it has none), it
// decides what to run and what to record.
//
// An update is being tried when pv_try is set and the booted revision is
// pv_try; pv_try set with another revision booted means the bootloader
// fell back (the pv_trying latch after a crash or watchdog reset).
func Resume(env bootloader.Env, booted string, p *storage.Progress) Boot {
	var b Boot
	switch try := env.Try(); {
	case try == "":
		b = resumeNoTry(env, booted, p)
	case booted == try:
		b = resumeTrying(try, env.Committed(), p)
	default:
		b = resumeFellBack(booted, p)
	}
	b.ProgressRev = Concerned(env, booted)
	return b
}

// resumeNoTry: no update pending. Upstream's factory path when the booted
// revision is "0", otherwise "no update".
func resumeNoTry(env bootloader.Env, booted string, p *storage.Progress) Boot {
	switch {
	case booted == bootloader.FactoryRev:
		// Upstream's set_factory: DONE "Factory revision" and the done
		// file. A factory revision left in ERROR by an earlier safe mode
		// is run again: the power cycle is the operator's retry.
		b := Boot{Action: BootRun, Rev: booted, Factory: true, MarkDone: true, Why: "factory revision"}
		if p == nil || p.Status != storage.StatusDone || p.Msg != storage.MsgFactory {
			b.Progress = with(p, storage.StatusDone, storage.MsgFactory)
		}
		return b
	case booted == env.Committed() && Ongoing(p):
		// Not upstream, which leaves such a progress as it is: the
		// bootloader already says the revision is committed, so the crash
		// came between the bootloader commit and the write of DONE.
		return Boot{Action: BootRun, Rev: booted, Progress: with(p, storage.StatusDone, storage.MsgDone),
			Why: "commit interrupted before DONE was written"}
	default:
		return Boot{Action: BootRun, Rev: booted, Why: "no update"}
	}
}

// resumeTrying: the bootloader booted pv_try; committed is pv_rev.
func resumeTrying(rev, committed string, p *storage.Progress) Boot {
	switch {
	case p != nil && p.Status.Failed():
		// Upstream returns -1 and goes to ROLLBACK: the revision already
		// failed (before a reboot that the bootloader took as a retry).
		b := Boot{Action: BootRollback, Rev: rev, Fail: true, Why: "tried revision already failed"}
		if rollback(rev, committed) == RecoverSafeMode {
			b.Action = BootSafeMode
		}
		return b
	default:
		// Upstream's INPROGRESS "Trying new revision". It covers UPDATED
		// too: a non-reboot update leaves pv_try set, so it is tested
		// again after this reboot and then committed. And DONE, which
		// upstream runs untested: a commit writes DONE only after the
		// bootloader commit has cleared pv_try, so DONE with pv_try on
		// this revision is the progress of an earlier run of it (a
		// LOCAL_RUN of a revision committed before, cut between setting
		// pv_try and writing INPROGRESS). Committing it untested would
		// drop the committed revision it was meant to fall back to.
		return Boot{Action: BootRun, Rev: rev, Trying: true,
			Progress: with(p, storage.StatusInProgress, storage.MsgTry), Why: "trying new revision"}
	}
}

// resumeFellBack: pv_try is set but the bootloader booted another revision
// (the committed one), so the try is over. p is the tried revision's.
func resumeFellBack(booted string, p *storage.Progress) Boot {
	switch {
	case p != nil && p.Status.Failed():
		// Upstream: the failure was recorded before the reboot; only
		// pv_try remains to clear.
		return Boot{Action: BootRun, Rev: booted, Fail: true, Why: "tried revision failed, bootloader rolled back"}
	case p != nil && p.Status == storage.StatusDone:
		// Upstream finishes and leaves pv_try set. Here the stale pv_try
		// is cleared, or every later boot would take it for a try.
		return Boot{Action: BootRun, Rev: booted, Fail: true, Why: "stale pv_try of a finished update"}
	default:
		// Upstream: a reboot, crash or watchdog reset before the commit.
		return Boot{Action: BootRun, Rev: booted, Fail: true,
			Progress: with(p, storage.StatusError, storage.MsgRolledBack), Why: "unexpected rollback"}
	}
}

// with returns a copy of p (a fresh progress when p is nil) in status s
// with message msg and s's percentage. Retries, downloads and logs are
// kept: the hub shows them with the final status.
func with(p *storage.Progress, s storage.Status, msg string) *storage.Progress {
	n := storage.Progress{}
	if p != nil {
		n = *p
	}
	n.Status, n.Msg, n.Progress = s, msg, s.Percent()
	return &n
}

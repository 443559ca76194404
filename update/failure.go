package update

import (
	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/storage"
)

// Recovery is what a failure of the running revision leads to.
type Recovery int

// The recoveries.
const (
	// RecoverReboot reboots without touching the bootloader variables, so
	// the same revision boots again (upstream's REBOOT state). In
	// appengine mode a reboot is a full teardown and re-exec.
	RecoverReboot Recovery = iota
	// RecoverRollback clears pv_try and then reboots, so the bootloader
	// boots the committed revision (upstream's ROLLBACK state). The
	// caller writes the failed progress before clearing pv_try: a crash in
	// between then still ends in the rollback, by the pv_trying latch.
	RecoverRollback
	// RecoverSafeMode stops the containers and keeps the control socket
	// up with the progress in ERROR, without rebooting (SPEC §4). Any
	// pv_try is cleared too, so that a power cycle boots the committed
	// revision.
	RecoverSafeMode
)

func (r Recovery) String() string {
	switch r {
	case RecoverReboot:
		return "reboot"
	case RecoverRollback:
		return "rollback"
	case RecoverSafeMode:
		return "safe mode"
	}
	return "unknown recovery"
}

// Ongoing reports whether the progress p of the revision being tried says
// an update is under test: INPROGRESS or TESTING (upstream's
// pv_update_is_transitioning check in WAIT and in ctrl). p is nil when the
// revision has no progress.
func Ongoing(p *storage.Progress) bool {
	return p != nil && (p.Status == storage.StatusInProgress || p.Status == storage.StatusTesting)
}

// OnFailure decides what a failure of the running revision leads to: a
// container that cannot start or escalates, a state that does not load.
// updating says an update is under test (Ongoing of the tried revision's
// progress); committed is the bootloader's committed revision (pv_rev),
// the one a rollback boots.
//
// Upstream rolls back during an update and otherwise reboots; its
// ROLLBACK of revision "0" goes to ERROR, which reboots, so a failing
// factory revision reboot-loops with nothing to roll back to. Here the
// factory revision with nothing to roll back to enters safe mode instead
// (SPEC §4): outside an update, or under test while "0" is itself the
// committed revision. Run again (LOCAL_RUN) while another revision is
// committed, it rolls back to that one like any try: safe mode there
// would stop every container until a power cycle. A committed revision
// other than "0" that fails outside an update still reboots as upstream
// does: the fault may be transient, and a reboot is what a watchdog would
// do anyway.
func OnFailure(running, committed string, updating bool) Recovery {
	switch {
	case running == bootloader.FactoryRev && (!updating || committed == bootloader.FactoryRev):
		return RecoverSafeMode
	case updating:
		return RecoverRollback
	default:
		return RecoverReboot
	}
}

// rollback is the recovery of a revision that failed its try: a rollback,
// or safe mode when it is the factory revision with nothing to roll back
// to (see OnFailure).
func rollback(rev, committed string) Recovery { return OnFailure(rev, committed, true) }

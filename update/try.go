package update

import "github.com/pantavisor/pv/storage"

// Goals is where the tried revision's status goals stand (upstream's
// pv_state_check_goals over groups and containers).
type Goals int

// The goal states.
const (
	// GoalsUnachieved: some group has not reached its goal yet and its
	// timeout has not expired.
	GoalsUnachieved Goals = iota
	// GoalsAchieved: every group reached its goal.
	GoalsAchieved
	// GoalsTimedOut: a group's timeout expired before its goal.
	GoalsTimedOut
)

// Action is what the try/commit loop does next.
type Action int

// The actions.
const (
	// ActionWait: nothing to do until the next check.
	ActionWait Action = iota
	// ActionStartCommitTimer: (re)start the PV_UPDATER_COMMIT_DELAY timer
	// (upstream default 25 s); the revision is now TESTING.
	ActionStartCommitTimer
	// ActionCommit: commit the revision to the bootloader (pv_rev=rev,
	// pv_try cleared), then write the DONE progress and the done flag.
	// In that order: a crash between them is completed by Resume (its
	// "commit interrupted before DONE was written" case).
	ActionCommit
	// ActionUpdated: write UPDATED and leave the bootloader alone. pv_try
	// stays set, so the next boot tries the revision again and commits
	// it then (upstream's non-reboot update).
	ActionUpdated
	// ActionRollback: write the ERROR progress, then recover as
	// OnFailure(rev, committed, true) says (a rollback, or safe mode for
	// a factory revision with nothing to roll back to).
	ActionRollback
)

func (a Action) String() string {
	switch a {
	case ActionWait:
		return "wait"
	case ActionStartCommitTimer:
		return "start commit timer"
	case ActionCommit:
		return "commit"
	case ActionUpdated:
		return "updated"
	case ActionRollback:
		return "rollback"
	}
	return "unknown action"
}

// Check is what the try/commit loop knows at one tick (upstream's
// pv_wait_update, every 2 s in WAIT).
type Check struct {
	// Progress is the tried revision's current progress.
	Progress storage.Progress
	// Goals is where its status goals stand.
	Goals Goals
	// ContainerFailed says a container could not be started or failed
	// beyond its recovery (the revision actor's escalation).
	ContainerFailed bool
	// Reboot says the revision came up by a reboot (Diff's Transition.Reboot,
	// or a boot that Resume found trying), not by a non-reboot transition.
	Reboot bool
	// CommitDue says the commit timer started by ActionStartCommitTimer
	// has fired.
	CommitDue bool
}

// Step is the next move of the try/commit loop.
type Step struct {
	Action Action
	// Progress is the progress to write before acting (after the
	// bootloader commit with ActionCommit), nil when it stays as it is.
	Progress *storage.Progress
}

// Next is one step of upstream's "testing and commit" (pv_wait_update): an
// INPROGRESS revision waits for its goals, then is TESTING for the commit
// delay, then is final: DONE and committed after a reboot transition,
// UPDATED (not committed) after a non-reboot one. A goal timeout while
// INPROGRESS rolls back with "Status goal not reached"; a container
// failure while INPROGRESS or TESTING rolls back with "A container could
// not be started". Any other status (not under test, or already final)
// waits: failures there are OnFailure's.
//
// Like upstream, goals are not checked again once TESTING: only a
// container failure ends the test early. The hub gates of remote updates
// (HUB_NOT_REACHABLE, HUB_NOT_STABLE) are not decided here.
func Next(c Check) Step {
	switch c.Progress.Status {
	case storage.StatusInProgress:
		return nextInProgress(c)
	case storage.StatusTesting:
		return nextTesting(c)
	default:
		return Step{Action: ActionWait}
	}
}

func nextInProgress(c Check) Step {
	switch {
	case c.ContainerFailed:
		return fail(c.Progress, storage.MsgContainerFailed)
	case c.Goals == GoalsTimedOut:
		return fail(c.Progress, storage.MsgStatusGoalFailed)
	case c.Goals == GoalsAchieved:
		msg := storage.MsgTestingNonReboot
		if c.Reboot {
			msg = storage.MsgTestingReboot
		}
		return Step{Action: ActionStartCommitTimer, Progress: with(&c.Progress, storage.StatusTesting, msg)}
	default:
		return Step{Action: ActionWait}
	}
}

func nextTesting(c Check) Step {
	switch {
	case c.ContainerFailed:
		return fail(c.Progress, storage.MsgContainerFailed)
	case !c.CommitDue:
		return Step{Action: ActionWait}
	case c.Reboot:
		return Step{Action: ActionCommit, Progress: with(&c.Progress, storage.StatusDone, storage.MsgDone)}
	default:
		return Step{Action: ActionUpdated, Progress: with(&c.Progress, storage.StatusUpdated, storage.MsgUpdated)}
	}
}

func fail(p storage.Progress, msg string) Step {
	return Step{Action: ActionRollback, Progress: with(&p, storage.StatusError, msg)}
}

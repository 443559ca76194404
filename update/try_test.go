package update

import (
	"reflect"
	"testing"

	"github.com/pantavisor/pv/storage"
)

func TestNext(t *testing.T) {
	inProgress := *prog(storage.StatusInProgress, storage.MsgTry)
	testingP := *prog(storage.StatusTesting, storage.MsgTestingReboot)
	wait := Step{Action: ActionWait}
	tests := []struct {
		name string
		in   Check
		want Step
	}{
		// Upstream INPROGRESS: UNACHIEVED → wait.
		{"in progress, goals pending", Check{Progress: inProgress, Reboot: true}, wait},
		// The commit timer is TESTING's; firing early changes nothing.
		{"in progress, commit due ignored", Check{Progress: inProgress, CommitDue: true}, wait},
		// Upstream INPROGRESS: ACHIEVED → restart the commit timer, TESTING.
		{"in progress, goals achieved after reboot", Check{Progress: inProgress, Goals: GoalsAchieved, Reboot: true},
			Step{ActionStartCommitTimer, prog(storage.StatusTesting, storage.MsgTestingReboot)}},
		{"in progress, goals achieved without reboot", Check{Progress: inProgress, Goals: GoalsAchieved},
			Step{ActionStartCommitTimer, prog(storage.StatusTesting, storage.MsgTestingNonReboot)}},
		// Upstream INPROGRESS: TIMEDOUT → ERROR STATUS_GOAL_FAILED → ROLLBACK.
		{"in progress, goals timed out", Check{Progress: inProgress, Goals: GoalsTimedOut, Reboot: true},
			Step{ActionRollback, prog(storage.StatusError, storage.MsgStatusGoalFailed)}},
		// Upstream WAIT: pv_state_run error while INPROGRESS → ROLLBACK.
		{"in progress, container failed", Check{Progress: inProgress, ContainerFailed: true},
			Step{ActionRollback, prog(storage.StatusError, storage.MsgContainerFailed)}},
		{"in progress, container failed and goals timed out", Check{Progress: inProgress, Goals: GoalsTimedOut, ContainerFailed: true},
			Step{ActionRollback, prog(storage.StatusError, storage.MsgContainerFailed)}},
		// Upstream TESTING: wait for the commit timer.
		{"testing, delay running", Check{Progress: testingP, Goals: GoalsAchieved, Reboot: true}, wait},
		// Upstream checks goals only while INPROGRESS.
		{"testing, goals timed out later", Check{Progress: testingP, Goals: GoalsTimedOut, Reboot: true}, wait},
		// Upstream set_final after a reboot: DONE, bootloader commit, done file.
		{"testing, due after reboot", Check{Progress: testingP, Goals: GoalsAchieved, Reboot: true, CommitDue: true},
			Step{ActionCommit, prog(storage.StatusDone, storage.MsgDone)}},
		// Upstream set_final without a reboot: UPDATED, pv_try kept.
		{"testing, due without reboot", Check{Progress: testingP, Goals: GoalsAchieved, CommitDue: true},
			Step{ActionUpdated, prog(storage.StatusUpdated, storage.MsgUpdated)}},
		{"testing, container failed", Check{Progress: testingP, ContainerFailed: true, CommitDue: true, Reboot: true},
			Step{ActionRollback, prog(storage.StatusError, storage.MsgContainerFailed)}},
		// Not under test: nothing for this loop to do.
		{"done", Check{Progress: *prog(storage.StatusDone, storage.MsgDone), ContainerFailed: true, CommitDue: true}, wait},
		{"updated", Check{Progress: *prog(storage.StatusUpdated, storage.MsgUpdated), Goals: GoalsTimedOut}, wait},
		{"error", Check{Progress: *prog(storage.StatusError, storage.MsgRolledBack), Goals: GoalsAchieved}, wait},
		{"new", Check{Progress: *prog(storage.StatusNew, storage.MsgInstalled), Goals: GoalsAchieved}, wait},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Next(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Next:\n got %v %+v\nwant %v %+v", got.Action, got.Progress, tt.want.Action, tt.want.Progress)
			}
		})
	}
}

// TestNextWalk runs the loop end to end for both transition kinds, as the
// revision actor would: each step's progress becomes the next check's.
func TestNextWalk(t *testing.T) {
	for _, tt := range []struct {
		reboot bool
		final  Action
		status storage.Status
	}{
		{true, ActionCommit, storage.StatusDone},
		{false, ActionUpdated, storage.StatusUpdated},
	} {
		p := *prog(storage.StatusInProgress, storage.MsgTry)
		p.Retries = 2
		checks := []Check{
			{Goals: GoalsUnachieved},
			{Goals: GoalsAchieved},
			{Goals: GoalsAchieved},
			{Goals: GoalsAchieved, CommitDue: true},
		}
		wantActions := []Action{ActionWait, ActionStartCommitTimer, ActionWait, tt.final}
		for i, c := range checks {
			c.Progress, c.Reboot = p, tt.reboot
			s := Next(c)
			if s.Action != wantActions[i] {
				t.Fatalf("reboot %v, step %d: action %v, want %v", tt.reboot, i, s.Action, wantActions[i])
			}
			if s.Progress != nil {
				p = *s.Progress
			}
		}
		if p.Status != tt.status || p.Progress != 100 || p.Retries != 2 {
			t.Errorf("reboot %v: final progress %+v, want %s at 100%% with retries kept", tt.reboot, p, tt.status)
		}
	}
}

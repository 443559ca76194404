package update

import (
	"reflect"
	"testing"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/storage"
)

func prog(s storage.Status, msg string) *storage.Progress {
	p := storage.NewProgress(s, msg)
	return &p
}

func TestResume(t *testing.T) {
	committed := bootloader.Env{bootloader.VarRev: "5"}
	trying := bootloader.Env{bootloader.VarRev: "5", bootloader.VarTry: "6", bootloader.VarTrying: "6"}
	factoryTry := bootloader.Env{bootloader.VarTry: "0"}
	tests := []struct {
		name   string
		env    bootloader.Env
		booted string
		p      *storage.Progress
		want   Boot
	}{
		{
			// Upstream: pv_rev "0" and no pv_try is the factory path;
			// set_factory writes DONE "Factory revision" and the done file.
			name: "factory, no progress", env: bootloader.Env{}, booted: "0",
			want: Boot{Action: BootRun, Rev: "0", Factory: true, MarkDone: true, ProgressRev: "0",
				Progress: prog(storage.StatusDone, storage.MsgFactory)},
		},
		{
			name: "factory, already done", env: bootloader.Env{}, booted: "0",
			p:    prog(storage.StatusDone, storage.MsgFactory),
			want: Boot{Action: BootRun, Rev: "0", Factory: true, MarkDone: true, ProgressRev: "0"},
		},
		{
			// An earlier boot ended in safe mode; the power cycle retries.
			name: "factory after safe mode", env: bootloader.Env{}, booted: "0",
			p: prog(storage.StatusError, storage.MsgContainerFailed),
			want: Boot{Action: BootRun, Rev: "0", Factory: true, MarkDone: true, ProgressRev: "0",
				Progress: prog(storage.StatusDone, storage.MsgFactory)},
		},
		{
			// Upstream: no pv_try and not "0": no update, nothing written.
			name: "no update", env: committed, booted: "5",
			p:    prog(storage.StatusDone, storage.MsgDone),
			want: Boot{Action: BootRun, Rev: "5", ProgressRev: "5"},
		},
		{
			name: "no update, no progress", env: committed, booted: "5",
			want: Boot{Action: BootRun, Rev: "5", ProgressRev: "5"},
		},
		{
			// Ours: pv_rev already names it, so only DONE was lost.
			name: "commit interrupted before DONE", env: committed, booted: "5",
			p: prog(storage.StatusTesting, storage.MsgTestingReboot),
			want: Boot{Action: BootRun, Rev: "5", ProgressRev: "5",
				Progress: prog(storage.StatusDone, storage.MsgDone)},
		},
		{
			// Booted by hand, not the committed revision: left alone.
			name: "ongoing progress of an uncommitted boot", env: committed, booted: "4",
			p:    prog(storage.StatusTesting, storage.MsgTestingReboot),
			want: Boot{Action: BootRun, Rev: "4", ProgressRev: "4"},
		},
		{
			// Upstream: trying and already failed → -1 → ROLLBACK.
			name: "trying, already failed", env: trying, booted: "6",
			p:    prog(storage.StatusError, storage.MsgStatusGoalFailed),
			want: Boot{Action: BootRollback, Rev: "6", Fail: true, ProgressRev: "6"},
		},
		{
			name: "trying, wontgo", env: trying, booted: "6",
			p:    prog(storage.StatusWontGo, storage.MsgNoParse),
			want: Boot{Action: BootRollback, Rev: "6", Fail: true, ProgressRev: "6"},
		},
		{
			// Upstream's ROLLBACK of "0" reboot-loops; ours: safe mode.
			name: "trying factory, already failed", env: factoryTry, booted: "0",
			p:    prog(storage.StatusError, storage.MsgContainerFailed),
			want: Boot{Action: BootSafeMode, Rev: "0", Fail: true, ProgressRev: "0"},
		},
		{
			// "0" run again with "5" committed: back to "5".
			name: "trying factory with another committed, already failed", env: bootloader.Env{bootloader.VarRev: "5", bootloader.VarTry: "0"}, booted: "0",
			p:    prog(storage.StatusError, storage.MsgContainerFailed),
			want: Boot{Action: BootRollback, Rev: "0", Fail: true, ProgressRev: "0"},
		},
		{
			// Upstream: failed, not trying (the bootloader already rolled
			// back) → unset pv_try, finish.
			name: "fell back, failed", env: trying, booted: "5",
			p:    prog(storage.StatusError, storage.MsgStatusGoalFailed),
			want: Boot{Action: BootRun, Rev: "5", Fail: true, ProgressRev: "6"},
		},
		{
			// Upstream: DONE → finish; it runs the revision untested.
			// Ours tries it again: a commit clears pv_try before it
			// writes DONE, so this DONE is of an earlier run.
			name: "trying, done", env: trying, booted: "6",
			p: prog(storage.StatusDone, storage.MsgDone),
			want: Boot{Action: BootRun, Rev: "6", Trying: true, ProgressRev: "6",
				Progress: prog(storage.StatusInProgress, storage.MsgTry)},
		},
		{
			// Upstream: DONE → finish, pv_try left; ours clears it.
			name: "fell back, done", env: trying, booted: "5",
			p:    prog(storage.StatusDone, storage.MsgDone),
			want: Boot{Action: BootRun, Rev: "5", Fail: true, ProgressRev: "6"},
		},
		{
			// Upstream: not trying and not factory → ERROR "Unexpected
			// rollback", unset pv_try.
			name: "fell back, in progress", env: trying, booted: "5",
			p: prog(storage.StatusInProgress, storage.MsgReboot),
			want: Boot{Action: BootRun, Rev: "5", Fail: true, ProgressRev: "6",
				Progress: prog(storage.StatusError, storage.MsgRolledBack)},
		},
		{
			name: "fell back, testing", env: trying, booted: "5",
			p: prog(storage.StatusTesting, storage.MsgTestingReboot),
			want: Boot{Action: BootRun, Rev: "5", Fail: true, ProgressRev: "6",
				Progress: prog(storage.StatusError, storage.MsgRolledBack)},
		},
		{
			name: "fell back, no progress", env: trying, booted: "5",
			want: Boot{Action: BootRun, Rev: "5", Fail: true, ProgressRev: "6",
				Progress: prog(storage.StatusError, storage.MsgRolledBack)},
		},
		{
			// Upstream: otherwise → INPROGRESS "Trying new revision".
			name: "trying after install", env: trying, booted: "6",
			p: prog(storage.StatusInProgress, storage.MsgReboot),
			want: Boot{Action: BootRun, Rev: "6", Trying: true, ProgressRev: "6",
				Progress: prog(storage.StatusInProgress, storage.MsgTry)},
		},
		{
			name: "trying, no progress", env: trying, booted: "6",
			want: Boot{Action: BootRun, Rev: "6", Trying: true, ProgressRev: "6",
				Progress: prog(storage.StatusInProgress, storage.MsgTry)},
		},
		{
			// A non-reboot update ends UPDATED with pv_try kept: the next
			// boot tests it again and commits it.
			name: "trying after a non-reboot update", env: trying, booted: "6",
			p: prog(storage.StatusUpdated, storage.MsgUpdated),
			want: Boot{Action: BootRun, Rev: "6", Trying: true, ProgressRev: "6",
				Progress: prog(storage.StatusInProgress, storage.MsgTry)},
		},
		{
			// Updating from the factory revision: pv_rev unset, pv_try set.
			name: "trying from factory", env: bootloader.Env{bootloader.VarTry: "1"}, booted: "1",
			want: Boot{Action: BootRun, Rev: "1", Trying: true, ProgressRev: "1",
				Progress: prog(storage.StatusInProgress, storage.MsgTry)},
		},
		{
			name: "fell back to factory", env: bootloader.Env{bootloader.VarTry: "1"}, booted: "0",
			p: prog(storage.StatusInProgress, storage.MsgReboot),
			want: Boot{Action: BootRun, Rev: "0", Fail: true, ProgressRev: "1",
				Progress: prog(storage.StatusError, storage.MsgRolledBack)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Resume(tt.env, tt.booted, tt.p)
			got.Why = "" // words for the log, not the decision
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Resume:\n got %+v %+v\nwant %+v %+v", got, got.Progress, tt.want, tt.want.Progress)
			}
		})
	}
}

// TestResumeKeepsCounters checks that a status change keeps what the hub
// shows with it.
func TestResumeKeepsCounters(t *testing.T) {
	p := storage.NewProgress(storage.StatusInProgress, storage.MsgReboot)
	p.Retries, p.Logs = 3, "log tail"
	got := Resume(bootloader.Env{bootloader.VarRev: "5", bootloader.VarTry: "6"}, "6", &p)
	if got.Progress == nil || got.Progress.Retries != 3 || got.Progress.Logs != "log tail" || got.Progress.Progress != 50 {
		t.Errorf("progress %+v, want retries and logs kept at 50%%", got.Progress)
	}
	if p.Msg != storage.MsgReboot {
		t.Errorf("input progress modified: %+v", p)
	}
}

// TestResumeIdempotent checks the crash-safety claim of Boot: applying a
// decision's progress and deciding again from the same variables decides
// the same again, or a state that asks nothing more of the progress.
func TestResumeIdempotent(t *testing.T) {
	envs := []bootloader.Env{
		{}, {bootloader.VarRev: "5"}, {bootloader.VarRev: "5", bootloader.VarTry: "6"},
	}
	progs := []*storage.Progress{nil, prog(storage.StatusInProgress, storage.MsgReboot),
		prog(storage.StatusTesting, storage.MsgTestingReboot), prog(storage.StatusError, storage.MsgRolledBack),
		prog(storage.StatusDone, storage.MsgDone), prog(storage.StatusUpdated, storage.MsgUpdated)}
	for _, env := range envs {
		for _, booted := range []string{"0", "5", "6"} {
			for _, p := range progs {
				first := Resume(env, booted, p)
				if first.Progress == nil || first.Trying {
					continue // trying re-enters INPROGRESS by design
				}
				again := Resume(env, booted, first.Progress)
				if again.Progress != nil || again.Action != first.Action || again.Rev != first.Rev {
					t.Errorf("env %v booted %s progress %+v: first %+v, then %+v", env, booted, p, first, again)
				}
			}
		}
	}
}

func TestConcerned(t *testing.T) {
	if got := Concerned(bootloader.Env{bootloader.VarTry: "6"}, "5"); got != "6" {
		t.Errorf("with pv_try: %q, want 6", got)
	}
	if got := Concerned(bootloader.Env{}, "5"); got != "5" {
		t.Errorf("without pv_try: %q, want 5", got)
	}
}

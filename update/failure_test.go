package update

import (
	"testing"

	"github.com/pantavisor/pv/storage"
)

func TestOnFailure(t *testing.T) {
	tests := []struct {
		name               string
		running, committed string
		updating           bool
		want               Recovery
	}{
		// Upstream WAIT: an error during an update → ROLLBACK.
		{"update under test", "6", "5", true, RecoverRollback},
		{"committed revision run again", "5", "5", true, RecoverRollback},
		// Upstream WAIT: an error outside an update → REBOOT.
		{"committed revision", "5", "5", false, RecoverReboot},
		// Upstream: ROLLBACK of "0" → ERROR → reboot loop. SPEC §4: safe mode.
		{"factory revision", "0", "0", false, RecoverSafeMode},
		{"factory revision under test", "0", "0", true, RecoverSafeMode},
		// ... when there is nothing to roll back to: run again while
		// another revision is committed, it rolls back to that one.
		{"factory revision run again", "0", "5", true, RecoverRollback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := OnFailure(tt.running, tt.committed, tt.updating); got != tt.want {
				t.Errorf("OnFailure(%q, %q, %v) = %v, want %v", tt.running, tt.committed, tt.updating, got, tt.want)
			}
		})
	}
}

func TestOngoing(t *testing.T) {
	for _, s := range []storage.Status{storage.StatusNew, storage.StatusQueued, storage.StatusDownloading,
		storage.StatusInProgress, storage.StatusTesting, storage.StatusUpdated, storage.StatusDone,
		storage.StatusWontGo, storage.StatusError} {
		want := s == storage.StatusInProgress || s == storage.StatusTesting
		if got := Ongoing(prog(s, "")); got != want {
			t.Errorf("Ongoing(%s) = %v, want %v", s, got, want)
		}
	}
	if Ongoing(nil) {
		t.Error("Ongoing(nil) = true")
	}
}

// TestStrings checks that every value of each enum has its own name for
// the logs.
func TestStrings(t *testing.T) {
	for _, names := range [][]string{
		{RecoverReboot.String(), RecoverRollback.String(), RecoverSafeMode.String(), Recovery(9).String()},
		{ActionWait.String(), ActionStartCommitTimer.String(), ActionCommit.String(), ActionUpdated.String(),
			ActionRollback.String(), Action(9).String()},
		{BootRun.String(), BootRollback.String(), BootSafeMode.String(), BootAction(9).String()},
	} {
		seen := map[string]bool{}
		for _, s := range names {
			if s == "" || seen[s] {
				t.Errorf("name %q empty or repeated in %q", s, names)
			}
			seen[s] = true
		}
	}
}

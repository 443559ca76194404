package update

import (
	"errors"
	"testing"

	"github.com/pantavisor/pv/storage"
)

func TestRun(t *testing.T) {
	badState := errors.New("state has 2 errors")
	ok := RunFacts{Exists: true}
	tests := []struct {
		name  string
		rev   string
		facts RunFacts
		want  []error // errors.Is must hold for each; nil: allowed
	}{
		{"local revision", "locals/dev1", ok, nil},
		{"hub revision", "7", ok, nil},
		{"previous update done", "locals/dev2", RunFacts{Exists: true, Tried: prog(storage.StatusDone, storage.MsgDone)}, nil},
		// UPDATED: a non-reboot update finished; upstream lets a new one in.
		{"previous update updated", "locals/dev2", RunFacts{Exists: true, Tried: prog(storage.StatusUpdated, storage.MsgUpdated)}, nil},
		{"previous update failed", "locals/dev2", RunFacts{Exists: true, Tried: prog(storage.StatusError, storage.MsgRolledBack)}, nil},
		// Upstream: 503 "Cannot do this operation while update is ongoing".
		{"update in progress", "locals/dev2", RunFacts{Exists: true, Tried: prog(storage.StatusInProgress, storage.MsgTry)},
			[]error{ErrUpdateOngoing}},
		{"update testing", "locals/dev2", RunFacts{Exists: true, Tried: prog(storage.StatusTesting, storage.MsgTestingReboot)},
			[]error{ErrUpdateOngoing}},
		{"ongoing wins over a bad name", "../x", RunFacts{Tried: prog(storage.StatusTesting, storage.MsgTestingReboot)},
			[]error{ErrUpdateOngoing}},
		{"bad name", "locals/a/b", ok, []error{ErrInvalidRevision, storage.ErrBadRevision}},
		{"empty name", "", ok, []error{ErrInvalidRevision, storage.ErrBadRevision}},
		{"current", "current", ok, []error{ErrInvalidRevision, storage.ErrBadRevision}},
		{"never uploaded", "locals/nope", RunFacts{}, []error{ErrUnknownRevision}},
		{"invalid state", "locals/bad", RunFacts{Exists: true, Invalid: badState}, []error{ErrInvalidRevision, badState}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Run(tt.rev, tt.facts)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Run(%q) = %v, want nil", tt.rev, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Run(%q) = nil, want %v", tt.rev, tt.want)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Run(%q) = %v, want errors.Is %v", tt.rev, err, w)
				}
			}
		})
	}
}

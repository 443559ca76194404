package main

import (
	"io"
	"log/slog"
	"testing"
)

// The journal marks a move to another revision without a reboot: from
// then on the kernel command line's pv_rev no longer names the running
// revision, and a supervisor started again without a running record must
// not take it for the running one. Starting a revision, or re-adopting it
// (the journal begins with the record), is no move.
func TestJournalMarksAMoveSinceTheBoot(t *testing.T) {
	work := t.TempDir()
	j := &journal{work: work, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	j.revision("1", false)
	j.revision("1", true)
	if movedSinceBoot(work) {
		t.Fatal("marked moved at the boot's own revision")
	}
	readopted := &journal{work: t.TempDir(), log: j.log, rec: runningRecord{Rev: "1"}}
	readopted.revision("1", false)
	if movedSinceBoot(readopted.work) {
		t.Fatal("marked moved at a re-adoption of the running revision")
	}
	j.revision("locals/2", true)
	if !movedSinceBoot(work) {
		t.Fatal("a non-reboot update to locals/2 not marked")
	}
	if r, err := loadRunning(work); err != nil || r.Rev != "locals/2" {
		t.Errorf("running record %+v, %v", r, err)
	}
}

package ctrl

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pantavisor/pv/messages"
)

// The objects a local update put that a finished revision shares (the
// put found them stored) are kept by the automatic GC across a
// supervisor started again between the update's objects and its step (a
// crash, a re-exec): the record of the objects put is kept in a file on
// the run tmpfs (Storage.PutRecord). Found by review: in memory only, it
// was forgotten, and the next upload-triggered GC removed the shared
// object with the finished revision; the step was then refused.
func TestAutoGCKeepsSharedPutAcrossARestart(t *testing.T) {
	st := withFinishedRev1(t)
	st.PutRecord = filepath.Join(t.TempDir(), "objects-put")
	l := st.Layout
	b := newFakeBackend()
	b.revs = messages.RevisionsReply{Running: "0", Committed: "0"}
	s, _ := gcServer(t, b, st, nil)
	client := unixClient(serveTest(t, s))
	if got := do(t, client, "PUT", "/objects/"+shaOf("root 1"), "root 1"); got.status != 200 {
		t.Fatalf("object = %d %s", got.status, got.body)
	}
	// The supervisor starts again: a new server on the same storage,
	// a record cut by its crash beside the object's.
	f, err := os.OpenFile(st.PutRecord, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("0123abc")
	f.Close()
	s2, _ := gcServer(t, b, st, nil)
	client2 := unixClient(serveTest(t, s2))
	if _, err := s2.collectAuto(context.Background(), st, "an upload that does not fit", true); err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(shaOf("root 1")); err != nil {
		t.Errorf("the pending update's object, acknowledged before the restart, is gone: %v", err)
	}
	if got := do(t, client2, "PUT", "/steps/locals/shared", stateWith(shaOf("conf"), shaOf("root 1"))); got.status != 200 {
		t.Errorf("the step of the update sharing root 1 = %d %s", got.status, got.body)
	}
	// The step named it: the record no longer keeps it.
	data, err := os.ReadFile(st.PutRecord)
	if err != nil || strings.Contains(string(data), shaOf("root 1")) {
		t.Errorf("record after the step: %q, %v; want it without the step's objects", data, err)
	}
}

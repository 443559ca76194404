package storage

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"syscall"
	"testing"
	"time"
)

func TestGC(t *testing.T) {
	l := newLayout(t)
	install(t, l, "0", map[string]string{"app/root.squashfs": "factory root", "app/conf": "shared conf"})
	install(t, l, "1", map[string]string{"app/root.squashfs": "old root", "app/conf": "shared conf"})
	install(t, l, "2", map[string]string{"app/root.squashfs": "running root", "app/conf": "shared conf"})
	install(t, l, "locals/dev", map[string]string{"app/root.squashfs": "dev root"})
	install(t, l, "3", map[string]string{"app/root.squashfs": "tried root"})
	// Revision 1's logs and revision disks go with it.
	for _, dir := range []string{l.Logs("1"), l.RevisionDisk("1", "app", "data")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 1000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// An object put for an update not installed yet, one kept by name, one
	// orphan, and one a state only upstream's layout knows (a trail
	// without hard links).
	pending := put(t, l, "pending object")
	orphan := put(t, l, "orphan")
	legacy := put(t, l, "legacy layout object")
	if err := os.MkdirAll(filepath.Join(l.Trail("4"), ".pvr"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.Trail("4"), TrailJSON), stateJSON(t, map[string]string{"x/y": legacy}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.SetCurrent("2"); err != nil {
		t.Fatal(err)
	}

	rep, err := l.GC(GCOptions{Keep: []string{"0", "3", "4"}, KeepObjects: []string{pending}})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(rep.Objects)
	wantObjs := []string{shaOf("dev root"), shaOf("old root"), orphan}
	sort.Strings(wantObjs)
	if !reflect.DeepEqual(rep.Revisions, []string{"1", "locals/dev"}) || !reflect.DeepEqual(rep.Objects, wantObjs) {
		t.Fatalf("report %+v", rep)
	}
	wantBytes := int64(len("dev root") + len("old root") + len("orphan") + 2000)
	if rep.Bytes < wantBytes {
		t.Errorf("freed %d bytes, want at least %d", rep.Bytes, wantBytes)
	}
	revs, _ := l.Revisions()
	if !reflect.DeepEqual(revs, []string{"0", "2", "3", "4"}) {
		t.Errorf("revisions left %v", revs)
	}
	for _, gone := range []string{l.Logs("1"), filepath.Join(l.Root, "disks", "rev", "1")} {
		if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left: %v", gone, err)
		}
	}
	for _, sha := range []string{pending, legacy, shaOf("shared conf"), shaOf("factory root"), shaOf("running root")} {
		if err := l.Verify(sha); err != nil {
			t.Errorf("kept object: %v", err)
		}
	}
	if err := l.Check(); err != nil {
		t.Error(err)
	}

	// Nothing more to collect; the pending object goes once not kept.
	rep, err = l.GC(GCOptions{Keep: []string{"0", "3", "4"}})
	if err != nil || len(rep.Revisions) != 0 || !reflect.DeepEqual(rep.Objects, []string{pending}) {
		t.Fatalf("second GC: %+v, %v", rep, err)
	}
}

func TestGCUnreadableState(t *testing.T) {
	l := newLayout(t)
	install(t, l, "0", map[string]string{"a/b": "kept"})
	orphan := put(t, l, "orphan")
	if err := os.Chmod(filepath.Join(l.Trail("0"), TrailJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.Trail("0"), TrailJSON), []byte("{torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := l.GC(GCOptions{Keep: []string{"0"}})
	if err == nil || len(rep.Objects) != 0 {
		t.Fatalf("GC with an unreadable state: %+v, %v", rep, err)
	}
	if err := l.Verify(orphan); err != nil {
		t.Errorf("object removed although references are unknown: %v", err)
	}
}

// A GC cut short after a revision's trail was removed (a power cut after
// RemoveTrail's durable rename, or its removal failing) left the
// revision's logs and revision disks behind for good: GC finds revisions
// by their trails. The trail now goes last, so the next GC takes it up.
func TestGCCutShortLeavesNothingUncollectable(t *testing.T) {
	l := newLayout(t)
	install(t, l, "0", map[string]string{"app/root.squashfs": "factory"})
	install(t, l, "1", map[string]string{"app/root.squashfs": "old"})
	data := filepath.Join(l.RevisionDisk("1", "app", "data"), "big.img")
	logf := filepath.Join(l.Logs("1"), "app", "console.log")
	for _, f := range []string{data, logf} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, make([]byte, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The cut: right after the trail was renamed away.
	setFault(t, func(step string) error {
		if step == "remove.delete" {
			return syscall.EIO
		}
		return nil
	})
	l.GC(GCOptions{Keep: []string{"0"}})
	fault = nil
	// The next boot: Recover, then GC.
	if _, err := l.Recover(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.GC(GCOptions{Keep: []string{"0"}}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{data, logf, l.Trail("1")} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s of removed revision 1 is still there (stat: %v)", f, err)
		}
	}
}

// TestGCOnlyFinalOnlyFreed: an automatic GC's options. OnlyFinal removes
// a revision whose update is over (DONE, ERROR) and keeps one whose
// progress is NEW (a local step not run yet), another status, missing or
// unreadable; OnlyFreed removes only the objects of the revisions it
// removed that nothing else refers to, never an object that was
// unreferenced before (a pending update's, a leftover), whatever the
// files' times.
func TestGCOnlyFinalOnlyFreed(t *testing.T) {
	l := newLayout(t)
	install(t, l, "0", map[string]string{"app/root.squashfs": "factory root", "app/conf": "shared conf"})
	install(t, l, "1", map[string]string{"app/root.squashfs": "done root", "app/conf": "shared conf"})
	install(t, l, "2", map[string]string{"app/root.squashfs": "failed root"})
	install(t, l, "locals/step", map[string]string{"app/root.squashfs": "step root"})
	install(t, l, "3", map[string]string{"app/root.squashfs": "testing root"})
	install(t, l, "4", map[string]string{"app/root.squashfs": "no progress root"})
	install(t, l, "5", map[string]string{"app/root.squashfs": "bad progress root"})
	for rev, p := range map[string]Progress{
		"1":           NewProgress(StatusDone, MsgDone),
		"2":           NewProgress(StatusError, MsgContainerFailed),
		"locals/step": NewProgress(StatusNew, MsgInstalled),
		"3":           NewProgress(StatusTesting, MsgTestingReboot),
	} {
		if err := l.WriteProgress(rev, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(l.Trail("5"), ".pv"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.Trail("5"), TrailProgress), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	pending := put(t, l, "pending object")
	leftover := put(t, l, "leftover object")
	// Times play no part: the pending object looks years old, a finished
	// revision years ahead.
	past, future := time.Now().AddDate(-5, 0, 0), time.Now().AddDate(5, 0, 0)
	for p, tm := range map[string]time.Time{l.Object(pending): past, l.Object(leftover): past, l.Trail("1"): future, l.Trail("locals/step"): past} {
		if err := os.Chtimes(p, tm, tm); err != nil {
			t.Fatal(err)
		}
	}

	rep, err := l.GC(GCOptions{Keep: []string{"0"}, OnlyFinal: true, OnlyFreed: true})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(rep.Objects)
	want := []string{shaOf("done root"), shaOf("failed root")}
	sort.Strings(want)
	if !reflect.DeepEqual(rep.Revisions, []string{"1", "2"}) || !reflect.DeepEqual(rep.Objects, want) {
		t.Errorf("removed %v and %v, want revisions 1 2 and their own objects %v", rep.Revisions, rep.Objects, want)
	}
	for _, sha := range []string{pending, leftover, shaOf("shared conf"), shaOf("step root")} {
		if err := l.Verify(sha); err != nil {
			t.Errorf("object kept by OnlyFreed removed: %v", err)
		}
	}
	if revs, _ := l.Revisions(); !reflect.DeepEqual(revs, []string{"0", "3", "4", "5", "locals/step"}) {
		t.Errorf("revisions %v, want 0 3 4 5 locals/step", revs)
	}

	// Without OnlyFreed the leftovers go too, the revisions stay.
	rep, err = l.GC(GCOptions{Keep: []string{"0"}, OnlyFinal: true})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(rep.Objects)
	want = []string{pending, leftover}
	sort.Strings(want)
	if len(rep.Revisions) != 0 || !reflect.DeepEqual(rep.Objects, want) {
		t.Errorf("OnlyFinal alone removed %v and %v, want the 2 unreferenced objects", rep.Revisions, rep.Objects)
	}
}

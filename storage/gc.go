package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// GCOptions say what a garbage collection must keep. The caller knows the
// bootloader's state; the store does not.
type GCOptions struct {
	// Keep are the revisions never removed: the running one, the committed
	// one (pv_rev), the one being tried (pv_try), the factory "0" and an
	// update being installed. trails/current's target is kept as well.
	Keep []string
	// KeepObjects are objects kept although no trail refers to them yet:
	// those of an update whose trail is not installed.
	KeepObjects []string
	// OnlyFinal restricts the revisions removed to those whose progress
	// is final (Status.Final: DONE, UPDATED, ERROR, WONTGO). A revision
	// whose progress is NEW (a local step put, not yet run), any other
	// status, missing or unreadable is kept: it may be an update on its
	// way, and only RUN_GC, asked for, removes it. An automatic GC sets
	// it; it does not depend on any clock.
	OnlyFinal bool
	// OnlyFreed restricts the objects removed to those this GC made
	// unreferenced: referenced by a revision it removed and by no
	// remaining trail. An object nothing referred to before the GC (the
	// objects of a local update whose step is not put yet, leftovers of
	// an abandoned one) is kept. The upload-triggered GC sets it, so an
	// update's objects survive however long their upload takes.
	OnlyFreed bool
}

// GCReport is what a garbage collection freed.
type GCReport struct {
	// Revisions removed, with their logs and revision disks.
	Revisions []string
	// Objects removed from the store.
	Objects []string
	// Bytes freed: the sizes of the files removed whose last link went.
	Bytes int64
}

// GC removes every revision not in opt.Keep (its trail, logs/<rev> and
// disks/rev/<rev>, as upstream does), then every object that no remaining
// trail refers to. Destructive: a revision missing from Keep is gone,
// with its logs and revision-persistent volumes. The caller serializes GC
// with InstallTrail and PutObject: an object put for an update whose trail
// is not installed yet is removed unless named in KeepObjects, or
// unless OnlyFreed is set. OnlyFinal and OnlyFreed make the GC an
// automatic one's: it removes only finished revisions and what they alone
// referred to.
//
// An object stays when a remaining trail's state refers to it, or when it
// is still hard-linked from anywhere (its link count above one). If a
// remaining trail's state cannot be read, no object is removed: its
// references are unknown. Errors on single revisions do not stop the
// others; they are returned joined, with the report of what was done.
func (l Layout) GC(opt GCOptions) (GCReport, error) {
	var rep GCReport
	keep := map[string]bool{}
	for _, rev := range opt.Keep {
		keep[rev] = true
	}
	if cur := l.CurrentRev(); cur != "" {
		keep[cur] = true
	}
	revs, err := l.Revisions()
	if err != nil {
		return rep, fmt.Errorf("gc: %w", err)
	}
	var errs []error
	// freed are the objects of the revisions removed: with OnlyFreed the
	// only candidates.
	var freed map[string]bool
	if opt.OnlyFreed {
		freed = map[string]bool{}
	}
	for _, rev := range revs {
		if keep[rev] || opt.OnlyFinal && !l.Finished(rev) {
			continue
		}
		var refs map[string]string
		if freed != nil {
			// Read before the trail goes. A revision whose state cannot
			// be read frees none of its objects: which they are is
			// unknown.
			if data, err := l.ReadState(rev); err == nil {
				if r, err := ParseRefs(data); err == nil {
					refs = r.Objects
				}
			}
		}
		n, err := l.removeRevision(rev)
		rep.Bytes += n
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Revisions = append(rep.Revisions, rev)
		for _, sha := range refs {
			freed[sha] = true
		}
	}
	objs, bytes, err := l.gcObjects(opt.KeepObjects, freed)
	rep.Objects, rep.Bytes = objs, rep.Bytes+bytes
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return rep, fmt.Errorf("gc: %w", err)
	}
	return rep, nil
}

// removeRevision removes a revision's logs, revision disks and trail, in
// that order, and returns the bytes freed. The trail goes last: GC finds
// revisions by their trails, so one cut short (a power cut, a failed
// removal) is taken up again by the next GC; with the trail gone first,
// the logs and disks left behind were never collected.
func (l Layout) removeRevision(rev string) (int64, error) {
	var freed int64
	for _, dir := range []string{l.Logs(rev), filepath.Join(l.Root, "disks", "rev", rev)} {
		n := unshared(dir)
		// A container's files (its volumes, its log directory if
		// bind-mounted): RemoveTree, whatever their depth.
		if err := RemoveTree(dir); err != nil {
			return freed, fmt.Errorf("remove revision %s: %w", rev, err)
		}
		freed += n
	}
	n := unshared(l.Trail(rev))
	if err := l.RemoveTrail(rev); err != nil {
		return freed, err
	}
	return freed + n, nil
}

// unshared sums the sizes of the regular files under root that have a
// single link: what removing root frees. Files hard-linked elsewhere (the
// objects) are counted when their last link goes.
func unshared(root string) int64 {
	var n int64
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil && links(fi) <= 1 {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// links is fi's hard-link count, 1 when the platform does not say.
func links(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// referenced returns every object a trail's state refers to.
func (l Layout) referenced() (map[string]bool, error) {
	revs, err := l.Revisions()
	if err != nil {
		return nil, err
	}
	refs := map[string]bool{}
	for _, rev := range revs {
		data, err := l.ReadState(rev)
		if errors.Is(err, ErrNoTrail) {
			continue // a trail without a state refers to nothing
		}
		if err != nil {
			return nil, err
		}
		r, err := ParseRefs(data)
		if err != nil {
			return nil, fmt.Errorf("revision %s: %w", rev, err)
		}
		for _, sha := range r.Objects {
			refs[sha] = true
		}
	}
	return refs, nil
}

// Finished reports whether revision rev's progress is readable and
// final (what an automatic GC may remove, OnlyFinal); false for no
// progress or one that cannot be read.
func (l Layout) Finished(rev string) bool {
	p, err := l.ReadProgress(rev)
	return err == nil && p.Status.Final()
}

// gcObjects removes the objects no trail refers to and not in
// keepObjects; when only is not nil, only those in it.
func (l Layout) gcObjects(keepObjects []string, only map[string]bool) ([]string, int64, error) {
	refs, err := l.referenced()
	if err != nil {
		return nil, 0, fmt.Errorf("collect objects: %w", err)
	}
	for _, sha := range keepObjects {
		refs[sha] = true
	}
	entries, err := os.ReadDir(l.Objects())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("collect objects: %w", err)
	}
	var removed []string
	var freed int64
	for _, e := range entries {
		sha := e.Name()
		if !IsSHA256(sha) || refs[sha] || only != nil && !only[sha] {
			continue
		}
		fi, err := e.Info()
		if err != nil || links(fi) > 1 {
			continue
		}
		if err := os.Remove(l.Object(sha)); err != nil {
			continue
		}
		removed = append(removed, sha)
		freed += fi.Size()
	}
	if len(removed) > 0 {
		if err := SyncDir(l.Objects()); err != nil {
			return removed, freed, fmt.Errorf("collect objects: %w", err)
		}
	}
	return removed, freed, nil
}

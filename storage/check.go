package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// InconsistentError lists what Check found wrong with a storage.
type InconsistentError struct {
	Problems []string
}

func (e *InconsistentError) Error() string {
	return "inconsistent storage: " + strings.Join(e.Problems, "; ")
}

// Check verifies a whole storage, hashing every object whatever its mark:
//   - every object in objects/ hashes to its name;
//   - every revision's state, when it has one, is a JSON object the store
//     can lay out, and every object it refers to is in objects/ or, as
//     upstream's older layouts have it, in the trail at its key;
//   - every object file in a trail at its key hashes to the state's sha256;
//   - every progress file parses;
//   - no temporary file of the store is left (Recover removes them).
//
// It changes nothing. I/O errors that stop the scan are returned as they
// are; findings as an *InconsistentError. It reads every byte of the
// store: for tests, power-cut checks and an explicit check command, not
// for a boot.
func (l Layout) Check() error {
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }

	temps, err := l.temporaries()
	if err != nil {
		return fmt.Errorf("check storage: %w", err)
	}
	for _, t := range temps {
		add("temporary file left: %s", t)
	}
	good := map[string]error{} // object sha -> its verification
	objs, err := l.ListObjects()
	if err != nil {
		return fmt.Errorf("check storage: %w", err)
	}
	for _, o := range objs {
		err := l.Verify(o.SHA)
		good[o.SHA] = err
		if err != nil {
			add("%v", err)
		}
	}
	revs, err := l.Revisions()
	if err != nil {
		return fmt.Errorf("check storage: %w", err)
	}
	for _, rev := range revs {
		for _, p := range l.checkTrail(rev, good) {
			add("revision %s: %s", rev, p)
		}
	}
	if len(probs) > 0 {
		return &InconsistentError{Problems: probs}
	}
	return nil
}

// CheckTrail checks one revision as Check does: its state, its objects
// (hashed) and its progress.
func (l Layout) CheckTrail(rev string) error {
	if err := CheckRev(rev); err != nil {
		return fmt.Errorf("check trail: %w", err)
	}
	if _, err := os.Stat(l.Trail(rev)); err != nil {
		return fmt.Errorf("check trail %s: %w: %w", rev, ErrNoTrail, err)
	}
	if probs := l.checkTrail(rev, map[string]error{}); len(probs) > 0 {
		return &InconsistentError{Problems: probs}
	}
	return nil
}

func (l Layout) checkTrail(rev string, good map[string]error) []string {
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	dir := l.Trail(rev)
	if _, err := os.Stat(filepath.Join(dir, TrailProgress)); err == nil {
		if _, err := l.ReadProgress(rev); err != nil {
			add("%v", err)
		}
	}
	data, err := ReadFileMax(filepath.Join(dir, TrailJSON), MaxStateJSON)
	if errors.Is(err, fs.ErrNotExist) {
		return probs // a revision announced, not installed: upstream writes progress first
	}
	if err != nil {
		return append(probs, err.Error())
	}
	refs, err := ParseRefs(data)
	if err != nil {
		return append(probs, err.Error())
	}
	for _, key := range slices.Sorted(maps.Keys(refs.Objects)) {
		sha := refs.Objects[key]
		inStore, checked := good[sha]
		if !checked {
			inStore = l.Verify(sha)
			good[sha] = inStore
		}
		linked := filepath.Join(dir, filepath.FromSlash(key))
		_, lerr := os.Lstat(linked)
		switch {
		case lerr == nil:
			if err := VerifyFile(linked, sha); err != nil {
				add("%s: %v", key, err)
			}
		case !errors.Is(lerr, fs.ErrNotExist):
			add("%s: %v", key, lerr)
		case inStore != nil:
			add("%s: %v", key, inStore)
		}
	}
	return probs
}

// temporaries lists the store's temporary files and directories: objects
// being written, trails being installed or removed, progress and other
// metadata being replaced.
func (l Layout) temporaries() ([]string, error) {
	var out []string
	entries, err := os.ReadDir(l.Objects())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		if isObjectTemp(e.Name()) {
			out = append(out, filepath.Join(l.Objects(), e.Name()))
		}
	}
	for _, sub := range []string{"", "locals"} {
		dir := filepath.Join(l.Trails(), sub)
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		for _, e := range entries {
			name := e.Name()
			if sub == "" && (strings.HasPrefix(name, installPrefix) || strings.HasPrefix(name, removePrefix) || name == ".current.tmp") {
				out = append(out, filepath.Join(dir, name))
			}
		}
	}
	// The bootloader's variables and the metadata persisted by the
	// control socket are written there with WriteFileAtomic too.
	for _, dir := range []string{l.Boot(), filepath.Join(l.Root, "cache", "meta"), filepath.Join(l.Root, "cache", "devmeta")} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if isAtomicTemp(e.Name()) && e.Type().IsRegular() {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
	}
	revs, err := l.Revisions()
	if err != nil {
		return nil, err
	}
	for _, rev := range revs {
		for _, meta := range []string{".pv", ".pvr"} {
			dir := filepath.Join(l.Trail(rev), meta)
			entries, err := os.ReadDir(dir)
			if err != nil {
				continue
			}
			for _, e := range entries {
				if isAtomicTemp(e.Name()) {
					out = append(out, filepath.Join(dir, e.Name()))
				}
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// isAtomicTemp reports whether name is a temporary file of
// WriteFileAtomic: ".<name>.tmp<random>".
func isAtomicTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp")
}

// Recover removes the temporary files and directories a crash left in the
// store (see Check) and returns their paths. None of them is a revision or
// an object yet: each write publishes its result by a rename, and these
// are what was never renamed. Run it at start-up, before anything writes
// to the store; run during a write it removes that write's work.
func (l Layout) Recover() ([]string, error) {
	temps, err := l.temporaries()
	if err != nil {
		return nil, fmt.Errorf("recover storage: %w", err)
	}
	var removed []string
	var errs []error
	for _, t := range temps {
		if err := os.RemoveAll(t); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, t)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("recover storage: %w", err)
	}
	return removed, nil
}

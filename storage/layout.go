package storage

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Layout names the paths of a storage directory, as upstream lays it out.
type Layout struct {
	Root string
}

// Paths inside a trail directory, as upstream names them.
const (
	TrailJSON     = ".pvr/json"
	TrailConfig   = ".pvr/config"
	TrailProgress = ".pv/progress"
	TrailCommit   = ".pv/commitmsg"
	TrailDone     = ".pv/done"
)

// ErrNoTrail is returned for a revision that is not there.
var ErrNoTrail = errors.New("no such revision")

// Trails is the directory of every revision.
func (l Layout) Trails() string { return filepath.Join(l.Root, "trails") }

// Trail is the directory of a revision.
func (l Layout) Trail(rev string) string { return filepath.Join(l.Root, "trails", rev) }

// TrailObjects is the object store of the storage that holds the trail
// directory trailDir: <S>/objects for <S>/trails/<rev> and for
// <S>/trails/locals/<name>.
func TrailObjects(trailDir string) string {
	if abs, err := filepath.Abs(trailDir); err == nil {
		trailDir = abs
	}
	trails := filepath.Dir(filepath.Clean(trailDir))
	if filepath.Base(trails) == "locals" {
		trails = filepath.Dir(trails)
	}
	return filepath.Join(filepath.Dir(trails), "objects")
}

// Current is the symbolic link to the running revision's trail.
func (l Layout) Current() string { return filepath.Join(l.Root, "trails", "current") }

// Objects is the content-addressed object store.
func (l Layout) Objects() string { return filepath.Join(l.Root, "objects") }

// Boot holds the bootloader environment.
func (l Layout) Boot() string { return filepath.Join(l.Root, "boot") }

// Logs is where a revision's logs go: <root>/logs/<rev>/<source>/.
func (l Layout) Logs(rev string) string { return filepath.Join(l.Root, "logs", rev) }

// RevisionDisk is where a container volume with persistence "revision" lives.
func (l Layout) RevisionDisk(rev, container, volume string) string {
	return filepath.Join(l.Root, "disks", "rev", rev, container, volume)
}

// PermanentDisk is where a container volume with persistence "permanent"
// lives; it survives updates.
func (l Layout) PermanentDisk(container, volume string) string {
	return filepath.Join(l.Root, "disks", "perm", container, volume)
}

// ErrBadRevision is returned for a revision name CheckRev refuses.
var ErrBadRevision = errors.New("bad revision name")

// CheckRev refuses revision names that would escape trails/ or collide with
// what trails/ holds besides revisions: a plain name or locals/<name>, as
// upstream allows, neither starting with "." (the store's temporary
// directories) nor being "current" or "locals".
func CheckRev(rev string) error {
	name := rev
	if rest, ok := strings.CutPrefix(rev, "locals/"); ok {
		name = rest
	} else if rev == "current" || rev == "locals" {
		return fmt.Errorf("%w %q", ErrBadRevision, rev)
	}
	if name == "" || len(name) > 64 || strings.HasPrefix(name, ".") || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%w %q", ErrBadRevision, rev)
	}
	return nil
}

package storage

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Layout names the paths of a storage directory, as upstream lays it out.
type Layout struct {
	Root string
}

// Trail is the directory of a revision.
func (l Layout) Trail(rev string) string { return filepath.Join(l.Root, "trails", rev) }

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

// CheckRev refuses revision names that would escape trails/: a plain name or
// locals/<name>, as upstream allows.
func CheckRev(rev string) error {
	name := rev
	if rest, ok := strings.CutPrefix(rev, "locals/"); ok {
		name = rest
	}
	if name == "" || len(name) > 64 || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("bad revision name %q", rev)
	}
	return nil
}

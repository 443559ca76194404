package update

import (
	"errors"
	"fmt"

	"github.com/pantavisor/pv/storage"
)

// MsgUpdateOngoing is upstream's exact text for a command refused while an
// update is under test (pv-ctrl answers 503 with it).
const MsgUpdateOngoing = "Cannot do this operation while update is ongoing"

// The reasons Run refuses a revision; ctrl maps them to HTTP statuses.
var (
	// ErrUpdateOngoing: another update is under test (upstream: 503,
	// MsgUpdateOngoing).
	ErrUpdateOngoing = errors.New("update ongoing")
	// ErrUnknownRevision: no state JSON was ever uploaded for it.
	ErrUnknownRevision = errors.New("unknown revision")
	// ErrInvalidRevision: a name storage refuses (also
	// storage.ErrBadRevision), or a state that does not validate.
	ErrInvalidRevision = errors.New("invalid revision")
)

// RunFacts are what ctrl knows when it is asked to run a revision.
type RunFacts struct {
	// Tried is the progress of the revision in pv_try, nil when no
	// revision is being tried or it has no progress.
	Tried *storage.Progress
	// Exists says the revision's trail holds a state JSON.
	Exists bool
	// Invalid is why the revision's state does not validate (the error
	// of state.LoadTrail), nil when it does.
	Invalid error
}

// Run decides whether LOCAL_RUN (and LOCAL_RUN_COMMIT) may start an
// update to rev: nil when it may. Like upstream it refuses while an
// update is under test (the tried revision INPROGRESS or TESTING), with
// ErrUpdateOngoing checked first, as upstream's 503 comes before anything
// is read. Unlike upstream, which finds out while installing, a revision
// that was never uploaded or does not validate is refused here, before
// the bootloader is touched.
func Run(rev string, f RunFacts) error {
	if Ongoing(f.Tried) {
		return fmt.Errorf("run %s: %w", rev, ErrUpdateOngoing)
	}
	if err := storage.CheckRev(rev); err != nil {
		return fmt.Errorf("run %s: %w: %w", rev, ErrInvalidRevision, err)
	}
	if !f.Exists {
		return fmt.Errorf("run %s: %w", rev, ErrUnknownRevision)
	}
	if f.Invalid != nil {
		return fmt.Errorf("run %s: %w: %w", rev, ErrInvalidRevision, f.Invalid)
	}
	return nil
}

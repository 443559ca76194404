package messages

import "errors"

// ErrNoUpdates: the actor tree runs without update storage, so it cannot
// run another revision (actors.ErrNoUpdates; here so that ctrl can map it
// without importing the actors).
var ErrNoUpdates = errors.New("no update storage")

// RunResult answers the root actor's run of a revision (System.RunRevision); Err is nil when the update started. Its
// sentinels are package update's (update.ErrUpdateOngoing, ...).
type RunResult struct {
	Err error
}

// PowerRequest asks root to reboot or power off the device (POST
// /commands REBOOT_DEVICE, POWEROFF_DEVICE). Root answers with
// PowerResult; it refuses while an update is under test.
type PowerRequest struct {
	Poweroff bool
	Reason   string
}

// PowerResult answers PowerRequest; Err is nil when the request was taken.
type PowerResult struct {
	Err error
}

// GetRevisions asks root which revisions the device uses; it answers with
// RevisionsReply.
type GetRevisions struct{}

// RevisionsReply names the revisions that storage's garbage collection
// must keep, and the update under way.
type RevisionsReply struct {
	// Running is the revision the containers run ("" in safe mode with
	// none loaded).
	Running string
	// Committed is the bootloader's pv_rev; Tried its pv_try ("" when no
	// update is pending).
	Committed, Tried string
	// Updating says an update is under test (INPROGRESS or TESTING): the
	// commands that change revisions are refused.
	Updating bool
	// Backing are the revisions whose engines made the mounts of
	// containers still running, kept by non-reboot updates: their
	// revision volumes and logs are in use.
	Backing []string
	// Err says the bootloader variables could not be read: Committed and
	// Tried are unknown, so nothing may be removed on this answer. An
	// error, not its text: a bootloader that is unusable
	// (bootloader.ErrUnusable) refuses every command that reads them,
	// and ctrl says why.
	Err error
}

// Revisions returns the distinct non-empty revisions of r, for GC.
func (r *RevisionsReply) Revisions() []string {
	var out []string
	for _, rev := range append([]string{r.Running, r.Committed, r.Tried}, r.Backing...) {
		if rev == "" {
			continue
		}
		dup := false
		for _, o := range out {
			dup = dup || o == rev
		}
		if !dup {
			out = append(out, rev)
		}
	}
	return out
}

// TryOver tells a revision that it is no longer under test (committed, or
// UPDATED): a container that gives up from now on is handled as outside
// an update.
type TryOver struct{}

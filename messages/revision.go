package messages

import "time"

// Shutdown asks root to stop the running revision (containers in reverse
// group order) and report when everything is down.
type Shutdown struct {
	Reason string
}

// ShutdownDone answers Shutdown once every container is stopped.
type ShutdownDone struct{}

// StopRevision asks a revision to stop its containers group by group, in
// reverse order; it answers with RevisionStopped.
type StopRevision struct{}

// RevisionStopped tells root a revision has stopped every container.
type RevisionStopped struct {
	Rev string
}

// RebootRequested tells root that a revision cannot go on: a system
// container gave up outside an update.
type RebootRequested struct {
	Rev    string
	Reason string
}

// RevisionBooted tells root, once per run of a revision, that its boot is
// over: every container reached its status goal, timed out or gave up.
type RevisionBooted struct {
	Rev string
	// Took is the time from the revision actor's start.
	Took time.Duration
	// Missed names the containers that did not reach their goal (their
	// group timed out, or they FAILED); empty for a complete boot.
	Missed []string
}

// RollbackRequested tells root that the revision being tried cannot run: a
// container gave up during an update. Root owns the bootloader and decides.
type RollbackRequested struct {
	Rev    string
	Reason string
}

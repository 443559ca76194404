package messages

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

// RevisionBooted tells root whether the revision reached all its goals.
type RevisionBooted struct {
	Rev string
}

// RollbackRequested tells root that the revision being tried cannot run: a
// container gave up during an update. Root owns the bootloader and decides.
type RollbackRequested struct {
	Rev    string
	Reason string
}

package messages

import (
	"fmt"
	"time"
)

// Status is a container's lifecycle status as GET /containers reports it.
type Status string

// The container statuses of SPEC §3, in upstream's order.
const (
	StatusInstalled  Status = "INSTALLED"
	StatusMounted    Status = "MOUNTED"
	StatusBlocked    Status = "BLOCKED"
	StatusStarting   Status = "STARTING"
	StatusStarted    Status = "STARTED"
	StatusReady      Status = "READY"
	StatusRecovering Status = "RECOVERING"
	StatusStopping   Status = "STOPPING"
	StatusStopped    Status = "STOPPED"
	StatusFailed     Status = "FAILED"
)

// Exit is how a container's init process ended.
type Exit struct {
	Code   int       `json:"code"`
	Signal int       `json:"signal"`
	At     time.Time `json:"time"`
}

// Failed reports whether the exit counts as a failure: a non-zero code or
// death by a signal.
func (e Exit) Failed() bool { return e.Code != 0 || e.Signal != 0 }

func (e Exit) String() string {
	if e.Signal != 0 {
		return fmt.Sprintf("killed by signal %d", e.Signal)
	}
	return fmt.Sprintf("exited with code %d", e.Code)
}

// StartContainer asks a container actor to bring its container to its goal
// (mount only for goal MOUNTED, else start).
type StartContainer struct{}

// StopContainer asks a container actor to stop its container: SIGTERM, then
// SIGKILL after Timeout. The actor answers with a ContainerStatusChanged to
// STOPPED when done.
type StopContainer struct {
	Timeout time.Duration
}

// ContainerStatusChanged tells the revision a container reached a status,
// with the facts GET /containers shows about it.
type ContainerStatusChanged struct {
	Name   string
	Status Status
	// Pid of the container's init while it runs, else 0.
	Pid int
	// Since is when the container entered Status.
	Since time.Time
	// StartedAt is when the current (or last) run started.
	StartedAt time.Time
	// LastExit is the most recent exit, if any.
	LastExit *Exit
	// Err explains a FAILED status.
	Err string
	// Lease is the container's network address, when it has one.
	Lease *Lease
}

// ContainerExited is the failure reason a container actor fails with when
// its container's init exits on its own: its supervisor (the revision)
// decides whether to restart it, give up, or escalate.
type ContainerExited struct {
	Name string
	Exit Exit
}

func (e *ContainerExited) Error() string {
	return fmt.Sprintf("container %s %s", e.Name, e.Exit)
}

// ContainerStartFailed is the failure reason when a container could not be
// started at all (mount, create or exec failed).
type ContainerStartFailed struct {
	Name string
	Err  string
}

func (e *ContainerStartFailed) Error() string {
	return fmt.Sprintf("container %s failed to start: %s", e.Name, e.Err)
}

// RecoveryDecided is sent by the revision to a container actor it resumed
// after a ContainerExited or ContainerStartFailed failure, when it will not
// restart it: the actor settles in Status.
type RecoveryDecided struct {
	Status Status
	Reason string
}

// SignalContainer carries POST /signal from a container to its actor.
type SignalContainer struct {
	Name    string
	Type    string
	Payload string
}

// SignalResult answers SignalContainer; Err is empty on success.
type SignalResult struct {
	Err string
}

// ContainerAction is PUT /containers/{name}: start, stop or restart.
type ContainerAction struct {
	Name   string
	Action string
}

// ActionResult answers ContainerAction. Code is an HTTP status (0 = OK)
// and Err the message for the client.
type ActionResult struct {
	Code int
	Err  string
}

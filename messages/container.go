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
	// Stuck is set while the container's processes outlive its stop
	// (SIGKILL did not end them: uninterruptible sleep, a hung FUSE
	// server, a dead disk): the stop waits for them to end, for as long
	// as it takes, and nothing more can be done to the container
	// meanwhile. Pid is its init.
	Stuck bool
	// Seq numbers the statuses of one container, from 1 up. A container
	// actor's failure reaches the revision ahead of the statuses the actor
	// sent before it (a failure is a system message); the failure carries
	// the Seq of the last of them, and the revision drops those that come
	// after its decision.
	Seq uint64
}

// ContainerExited is the failure reason a container actor fails with when
// its container's init exits on its own: its supervisor (the revision)
// decides whether to restart it, give up, or escalate.
type ContainerExited struct {
	Name string
	Exit Exit
	// StartedAt is when the run that exited started.
	StartedAt time.Time
	// Seq is that of the last status sent before the exit.
	Seq uint64
}

func (e *ContainerExited) Error() string {
	return fmt.Sprintf("container %s %s", e.Name, e.Exit)
}

// ContainerStartFailed is the failure reason when a container could not be
// started at all (mount, create or exec failed).
type ContainerStartFailed struct {
	Name string
	Err  string
	// Seq is that of the last status sent before the failure.
	Seq uint64
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

// SignalRefusal says why a container's signal was not taken. Upstream
// answers every refusal alike; the reason is for the device's log.
type SignalRefusal uint8

// The refusals, from the outside of the tree in.
const (
	// SignalAccepted: the signal was taken.
	SignalAccepted SignalRefusal = iota
	// SignalNoRevision: no revision is running (safe mode).
	SignalNoRevision
	// SignalNoContainer: the caller is no container of the running revision.
	SignalNoContainer
	// SignalUnknownType: the type is not one the device knows ("ready").
	SignalUnknownType
	// SignalGoalNotReady: the container's status goal is not READY, so
	// nothing waits for its ready signal.
	SignalGoalNotReady
	// SignalWrongStatus: the container is neither STARTED nor READY.
	SignalWrongStatus
)

var signalRefusals = [...]string{
	SignalAccepted:     "accepted",
	SignalNoRevision:   "no revision is running",
	SignalNoContainer:  "no such container in the running revision",
	SignalUnknownType:  "unknown signal type",
	SignalGoalNotReady: "the container's status goal is not READY",
	SignalWrongStatus:  "the container is neither STARTED nor READY",
}

func (r SignalRefusal) String() string {
	if int(r) < len(signalRefusals) {
		return signalRefusals[r]
	}
	return fmt.Sprintf("SignalRefusal(%d)", r)
}

// SignalResult answers SignalContainer: SignalAccepted, or why not, with
// the detail (the type or status concerned) in Detail.
type SignalResult struct {
	Refusal SignalRefusal
	Detail  string
}

// SignalError is a refused signal, as the tree's callers get it.
type SignalError struct {
	Container, Type string
	Refusal         SignalRefusal
	Detail          string
}

func (e *SignalError) Error() string {
	msg := fmt.Sprintf("signal %q from container %s refused: %s", e.Type, e.Container, e.Refusal)
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

// Container actions of PUT /containers/{name}.
const (
	ActionStart   = "start"
	ActionStop    = "stop"
	ActionRestart = "restart"
)

// ContainerAction is PUT /containers/{name}: ActionStart, ActionStop or
// ActionRestart.
type ContainerAction struct {
	Name   string
	Action string
}

// Outcome is how a container action ended, in the device's terms; the
// control socket alone turns it into an HTTP status and upstream's words.
type Outcome uint8

// The outcomes of a container action.
const (
	// Done: the action was carried out (a start: the container reached
	// its goal or STARTED).
	Done Outcome = iota
	// NotFound: no container of that name in the running revision.
	NotFound
	// NotAllowed: the container has restart_policy system, which the API
	// does not control.
	NotAllowed
	// InvalidAction: the action is none of start, stop and restart.
	InvalidAction
	// WrongState: the container's status (starting, stopping,
	// recovering) or the revision's (stopping) does not allow it now.
	WrongState
	// StartFailed: the container was asked up and failed.
	StartFailed
	// Canceled: a start or restart was overtaken before the container
	// was up, by a stop through the API or the revision's own stop.
	Canceled
)

var outcomes = [...]string{
	Done:          "done",
	NotFound:      "no such container",
	NotAllowed:    "restart policy system is not controlled through the API",
	InvalidAction: "invalid action",
	WrongState:    "the container's state does not allow it",
	StartFailed:   "start failed",
	Canceled:      "canceled",
}

func (o Outcome) String() string {
	if int(o) < len(outcomes) {
		return outcomes[o]
	}
	return fmt.Sprintf("Outcome(%d)", o)
}

// ActionResult answers ContainerAction; Detail says more than the Outcome
// (the failure of a start, the status that refused an action).
type ActionResult struct {
	Outcome Outcome
	Detail  string
}

// ActionError is a container action whose outcome is not Done.
type ActionError struct {
	Container, Action string
	Outcome           Outcome
	Detail            string
}

func (e *ActionError) Error() string {
	msg := fmt.Sprintf("%s container %s: %s", e.Action, e.Container, e.Outcome)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

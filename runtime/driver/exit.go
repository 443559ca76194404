package driver

import (
	"fmt"
	"syscall"
	"time"
)

// Exit is how a container's init process ended.
type Exit struct {
	// Code is the exit status, or 128+signal when the process was killed
	// by a signal (the shell convention, so it is never 0 for a kill).
	Code int
	// Signal is the signal that killed the process, 0 if it exited.
	Signal syscall.Signal
	// At is when the exit was observed.
	At time.Time
}

// Success reports whether the process exited with status 0.
func (e Exit) Success() bool { return e.Code == 0 && e.Signal == 0 }

func (e Exit) String() string {
	if e.Signal != 0 {
		return fmt.Sprintf("killed by signal %d (%s)", int(e.Signal), e.Signal)
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// exitFromStatus converts a wait status.
func exitFromStatus(ws syscall.WaitStatus, at time.Time) Exit {
	if ws.Signaled() {
		return Exit{Code: 128 + int(ws.Signal()), Signal: ws.Signal(), At: at}
	}
	return Exit{Code: ws.ExitStatus(), At: at}
}

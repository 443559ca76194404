package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/asynkron/protoactor-go/actor"
)

// errPanic marks a result produced because the work panicked.
var errPanic = errors.New("panic in background work (see log)")

// goSafe runs work in a goroutine and sends its result to self (a nil one
// is not sent: the work had nothing to report). A panic in
// work must not kill the process (it may be PID 1): it is logged and turned
// into the result onPanic builds, so the actor learns the work failed.
func goSafe(sys *actor.ActorSystem, self *actor.PID, onPanic func() any, work func() any) {
	go func() {
		var result any
		defer func() {
			if p := recover(); p != nil {
				sys.Logger().Error("panic in actor background work",
					"actor", self.Id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				result = onPanic()
			}
			if result != nil { // nil: nothing to report
				sys.Root.Send(self, result)
			}
		}()
		result = work()
	}()
}

// goLogged runs fn in a goroutine whose panic is logged with its stack and
// goes no further: for work whose outcome nobody waits for (an undo, a
// callback), where the log is the report.
func goLogged(log *slog.Logger, what string, fn func()) {
	go func() {
		defer func() {
			if p := recover(); p != nil {
				logPanic(log, what, p)
			}
		}()
		fn()
	}()
}

// logPanic logs a recovered panic with the stack that raised it.
func logPanic(log *slog.Logger, what string, p any) {
	log.Error("panic in "+what, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
}

package actors

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/asynkron/protoactor-go/actor"
)

// errPanic marks a result produced because the work panicked.
var errPanic = errors.New("panic in background work (see log)")

// goSafe runs work in a goroutine and sends its result to self. A panic in
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
			sys.Root.Send(self, result)
		}()
		result = work()
	}()
}

package actors

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

// injectPanic makes a child actor of the revision panic, as a Go bug
// would: name is its actor name (a container's name, "pool:" and a pool's).
func (s *System) injectPanic(t *testing.T, name string) {
	if t != nil {
		t.Helper()
	}
	s.sys.Root.Send(s.revisionChild(name), &injectedPanic{reason: "injected by the test"})
}

// revisionChild is the PID of a child actor of the boot revision (rev-0):
// a container's name, "pool:" and a pool's.
func (s *System) revisionChild(name string) *actor.PID {
	return actor.NewPID(s.sys.Address(), rootName+"/rev-0/"+name)
}

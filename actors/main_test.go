//go:build !integration

// With the integration tag the package's external tests have their own
// TestMain (panic_integration_test.go): one per test binary.

package actors

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test in this package must leave no goroutine behind: actors run
// inside PID 1 for the device's whole life, so a leak per call adds up.
// protoactor's dead-letter throttle starts a ticker goroutine per actor
// system that nothing can stop; it is protoactor's, not ours, so it is ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}

package ctrl

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test in this package must leave no goroutine behind: ctrl runs
// inside PID 1 for the device's whole life, so a leak per call adds up.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

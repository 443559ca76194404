package http

import (
	"testing"

	"github.com/pantavisor/pv/internal/isolated"

	"go.uber.org/goleak"
)

// Every connection's goroutines end with the proxy that started them.
// The hang-up watcher's goroutine is the process's, started once.
func TestMain(m *testing.M) {
	isolated.Loopback() // run by the integration runner: a fresh netns
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/pantavisor/pv/xconnect/hangup.(*Watcher).run"))
}

package tcp

import (
	"testing"

	"github.com/pantavisor/pv/internal/isolated"

	"go.uber.org/goleak"
)

// Every connection's goroutines end with the proxy that started them.
func TestMain(m *testing.M) {
	isolated.Loopback() // run by the integration runner: a fresh netns
	goleak.VerifyTestMain(m)
}

package http

import (
	"testing"

	"go.uber.org/goleak"
)

// Every connection's goroutines end with the proxy that started them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

package ingress

import (
	"os"
	"testing"

	"github.com/pantavisor/pv/internal/isolated"
)

func TestMain(m *testing.M) {
	isolated.Loopback() // run by the integration runner: a fresh netns
	os.Exit(m.Run())
}

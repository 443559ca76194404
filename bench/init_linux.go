package bench

import (
	"errors"
	"fmt"

	"github.com/pantavisor/pv/runtime/driver"
)

// heldInit is this process's handle on the container init, held as
// the supervisor holds it (driver.OpenInit): the inits of this project's
// containers are pvinit, those of the bare libcontainer baselines (run
// inside withoutInit) are copies of this program, as libcontainer alone
// makes them.
var heldInit struct {
	path, lower string
	ci          *driver.Init
}

// OpenContainerInit opens the handle on the container init at path, with
// lower as the overlay's empty layer, and keeps it for the figures.
func OpenContainerInit(path, lower string) error {
	ci, err := driver.OpenInit(path, lower)
	if err != nil {
		return err
	}
	heldInit.path, heldInit.lower, heldInit.ci = path, lower, ci
	return nil
}

// withoutInit runs fn with the handle closed: the inits fn starts are
// libcontainer's own. The handle is opened again afterwards.
func withoutInit(fn func() error) error {
	if heldInit.ci == nil {
		return fn()
	}
	if err := heldInit.ci.Close(); err != nil {
		return fmt.Errorf("container init: %w", err)
	}
	heldInit.ci = nil
	err := fn()
	ci, oerr := driver.OpenInit(heldInit.path, heldInit.lower)
	if oerr == nil {
		heldInit.ci = ci
	}
	return errors.Join(err, oerr)
}

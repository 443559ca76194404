// Command pvinit is the init of pantavisor's containers and nothing else:
// libcontainer's container init (its nsexec constructor, then its Go
// init), without the rest of pantavisor. A container started while the
// supervisor holds a handle on it (driver.OpenInit) becomes pvinit
// instead of a second copy of the whole pantavisor binary, which saves
// each start the runtime start-up and package initialisation of all of
// pantavisor's packages (actors, protobuf, metrics, HTTP, ...).
//
// It must come from the same build as the pantavisor binary it serves:
// libcontainer's parent and init speak a private protocol. The
// supervisor checks this (driver.OpenInit) and ignores a pvinit that does
// not match.
package main

import (
	"fmt"
	"os"

	// "pvinit init" never returns from initshim's init.
	_ "github.com/pantavisor/pv/runtime/driver/initshim"
)

func main() {
	fmt.Fprintln(os.Stderr, "pvinit: the init of pantavisor's containers; it is started by pantavisor, not by hand")
	os.Exit(2)
}

// Command pantavisor is the init system of a containerized device. Its
// subcommands:
//
//	pantavisor validate [--appengine] [--warnings] PATH
//
// validates a revision (a state JSON file, or a trail directory whose objects
// are checked too) and exits 0 when valid, 1 when invalid, 2 when unreadable.
//
//	pantavisor appengine --storage DIR [--run RUN] [--config FILE] [-v]
//
// runs the device as an application, in fresh pid+mount+net namespaces.
//
//	pantavisor (as the kernel's init)
//
// runs the device itself (embedded mode, embedded.go).
package main

import (
	"fmt"
	"io"
	"os"

	// Makes this binary libcontainer's container init when re-executed as
	// "pantavisor init", and keeps the main thread out of container
	// namespaces (see the package).
	_ "github.com/pantavisor/pv/runtime/driver/initshim"
	"github.com/pantavisor/pv/runtime/reaper"
	"github.com/pantavisor/pv/xconnect"
)

const usage = `usage: pantavisor <command> [arguments]

commands:
  validate [--appengine] [--warnings] PATH
        check a revision: PATH is a state JSON file or a trail directory
        (trails/<rev>); exit 0 valid, 1 invalid, 2 unreadable
  appengine --storage DIR [--run RUN] [--config FILE] [-v]
        run the revision the bootloader env in DIR/boot names (rev 0 when
        none) in fresh pid+mount+net namespaces; control socket RUN/pv-ctrl

as the kernel's init (/init), pantavisor runs the device itself: PID 1
starts "pantavisor embedded" and powers off or reboots when it ends
`

func main() {
	// A copy of pantavisor started to connect to a link's provider as
	// another uid does that and exits (xconnect.DialAs).
	xconnect.HelperMain()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "validate":
		return validateCmd(args[1:], stdout, stderr)
	case "appengine":
		return appengineCmd(args[1:], stdout, stderr)
	case reaper.EmbeddedCmd:
		return embeddedCmd(args[1:], stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "pantavisor: unknown command %q\n%s", args[0], usage)
	return 2
}

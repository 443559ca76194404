// Package initshim turns the importing binary into libcontainer's container
// init when it is re-executed as "<binary> init". Package driver imports it
// (for the hand-off's values, below), so every program that starts
// containers links it; blank-import it from the main package and from every
// test package that starts containers all the same, to say so where its
// init runs:
//
//	import _ "github.com/pantavisor/pv/runtime/driver/initshim"
//
// Its init function runs before main (and before the testing framework)
// and, in the re-executed process only, never returns: it becomes the
// container's process. The imports also link libcontainer's nsenter (C code
// that runs before the Go runtime starts, to join namespaces) and the
// device cgroup managers (without which device rules fail).
//
// It also locks the main goroutine to the main thread, for good: see init.
//
// In a binary that starts containers, it also links the hand-off to the
// container init binary (handoff_linux.c, see driver.OpenInit): an init
// started while the supervisor holds a handle on pvinit becomes pvinit
// before this binary's runtime starts. InitName, InitFd and InitSeals are
// what the hand-off and OpenInit agree on.
package initshim

// #cgo CFLAGS: -Wall
import "C"

import (
	"os"
	"runtime"

	_ "github.com/opencontainers/cgroups/devices" // device rules in cgroup Resources
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // nsexec() runs before the Go runtime
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // never returns
	}
	// Keep every other goroutine off the main thread. For each container
	// start, libcontainer runs a goroutine that locks its thread, joins the
	// container's mount namespace and exits still locked, so that Go
	// destroys the thread. Go cannot destroy the main thread: it would wedge
	// it instead, still inside that mount namespace, pinning the
	// container's rootfs (overlay, squashfs, loop device) for the life of
	// the process. init functions run on the main goroutine and the main
	// thread, so locking here reserves the main thread for main.
	runtime.LockOSThread()
}

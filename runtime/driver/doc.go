// Package driver runs containers with runc's libcontainer: it translates a
// spec.Container and a mounted root filesystem into a libcontainer
// configuration (Translate), and drives the container through Create,
// Start (init created, waiting before the user command is executed, so its
// network namespace can be plumbed), Exec, Wait, Stop and Destroy.
//
// The package is mechanism only; it knows nothing of actors or revisions.
//
// Requirements on the program that uses it:
//
//   - runtime/driver/initshim, blank-imported in the main package and in
//     every test package that starts containers (this package imports it
//     too, for the hand-off's values, so it is linked in any case):
//     libcontainer re-executes the binary as "<binary> init" to become the
//     container's init, and initshim also keeps goroutines off the main
//     thread (a thread wedged in a container's mount namespace would pin
//     its rootfs forever);
//   - cgo (libcontainer's nsenter is C);
//   - call PrepareExeSealing first thing in main (or at least before
//     the first container start), so that no start copies the binary:
//     libcontainer's per-start overlay when the kernel allows it, else a
//     sealed copy made once;
//   - optionally, open the container init with OpenInit before the first
//     start: every init then becomes pvinit (cmd/pvinit, from the same
//     build) instead of running a copy of the whole program.
//
// A main therefore starts like this:
//
//	import _ "github.com/pantavisor/pv/runtime/driver/initshim"
//
//	func main() {
//		if _, err := driver.PrepareExeSealing(stateRoot); err != nil {
//			log.Print(err) // containers will copy the binary at each start
//		}
//		...
//	}
//
// Cgroups are handled by libcontainer's cgroupfs managers (v1 or v2, as
// the host provides); each Driver has its own cgroup parent and removes
// the parent directories libcontainer leaves behind once they are empty.
package driver

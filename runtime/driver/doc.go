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
//   - blank-import runtime/driver/initshim in the main package and in every
//     test package that starts containers: libcontainer re-executes the
//     binary as "<binary> init" to become the container's init, and
//     initshim also keeps goroutines off the main thread (a thread wedged
//     in a container's mount namespace would pin its rootfs forever);
//   - cgo (libcontainer's nsenter is C);
//   - optionally, call EnsureSealedExe first thing in main, so that
//     libcontainer does not copy the binary on every container start.
//
// A PID-1 main therefore starts like this:
//
//	import _ "github.com/pantavisor/pv/runtime/driver/initshim"
//
//	func main() {
//		_ = driver.EnsureSealedExe() // re-executes once; on error, runs unsealed
//		if os.Getpid() == 1 && !reaper.IsChild() {
//			code, err := reaper.Run(reaper.Options{})
//			...
//			os.Exit(code)
//		}
//		// the supervisor
//	}
//
// Cgroups are handled by libcontainer's cgroupfs managers (v1 or v2, as
// the host provides); each Driver has its own cgroup parent and removes
// the parent directories libcontainer leaves behind once they are empty.
package driver

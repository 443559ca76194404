// Package reaper is the one owner of orphan reaping when Pantavisor is
// PID 1 (embedded mode, or appengine inside its fresh pid namespace).
//
// As PID 1 the process inherits every orphan, and somebody must wait for
// them or they stay zombies. A wait4(-1) inside the supervisor itself would
// steal exit statuses from the waits it relies on: libcontainer's
// Process.Wait for container inits and os/exec's Cmd.Wait for tools it runs
// (iptables, which go-iptables executes), which then fail with "no child
// processes". So PID 1 is split in two processes:
//
//   - the reaper (PID 1): it starts the supervisor as its only child (a
//     re-execution of the same binary, marked with ChildEnv), forwards
//     every catchable termination/control signal to it, and waits for
//     everything. Its only own child is the supervisor, so the only
//     status it cares about is the supervisor's; every other pid it reaps
//     is an orphan that nobody else can wait for.
//   - the supervisor (the child): it waits only for its own children.
//     Container inits are its children (libcontainer starts them with
//     CLONE_PARENT), so their statuses are never stolen.
//
// The reaper is written in C and runs from a constructor, before the Go
// runtime starts, in a process started with PID1Env=1: PID 1 then keeps
// no Go runtime and none of the whole binary's package initialisation
// resident, and adds no Go start-up to the boot (ARCHITECTURE.md,
// Performance notes).
// Importing the package (from the main package) is what links it in.
//
// When the supervisor exits, the reaper reaps the remaining zombies and
// exits with the supervisor's status. In appengine mode that ends the pid
// namespace (the kernel kills what is left); in embedded mode the caller
// decides (reboot). The supervisor does not set PR_SET_PDEATHSIG: PID 1
// never dies before it, and if PID 1 crashes the kernel kills the whole
// namespace or panics anyway. What matters is that the supervisor, on
// SIGTERM, does its own orderly teardown (stop containers, unmount, sync),
// which an automatic SIGKILL would pre-empt.
//
// The package also holds the appengine host stage in C (host_linux.c):
// `pantavisor appengine` run from a shell clones PID 1 of fresh
// pid+mount+net namespaces (which becomes the reaper), relays SIGINT,
// SIGTERM and SIGHUP to it and starts it again after a reboot exit, all
// before a Go runtime exists. cmd/pantavisor keeps the same stage in Go
// for when the C one declines (GoHostEnv, a help flag, no privileges to
// make namespaces).
package reaper

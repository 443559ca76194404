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
// When the supervisor exits on its own (stop, reboot, power-off, an error
// it reported), the reaper reaps the remaining zombies and exits with the
// supervisor's status. In appengine mode that ends the pid namespace (the
// kernel kills what is left); in embedded mode PID 1 powers off or
// reboots, with the command "0 tryboot" for ExitRebootTryboot (rpiab's
// firmware tries the other partition once; a plain reboot if the kernel
// refuses it: PID 1 never dies of it). The supervisor does not set PR_SET_PDEATHSIG: PID 1 never dies
// before it, and if PID 1 crashes the kernel kills the whole namespace or
// panics anyway. What matters is that the supervisor, on SIGTERM, does its
// own orderly teardown (stop containers, unmount, sync), which an
// automatic SIGKILL would pre-empt.
//
// When the supervisor crashes (a Go fatal error or panic, exit 2; death
// by a signal PID 1 did not pass on as a stop: the OOM killer, SIGKILL)
// after it was up, or asks for it (ExitReexec, on SIGHUP), PID 1 starts it
// again and the containers keep running: the new supervisor (Generation
// > 0) re-adopts them (cmd/pantavisor). For that PID 1 keeps two things
// across supervisors, on a SEQPACKET socket pair it makes for each one
// (the supervisor's end at descriptor EXITS_FD):
//   - the exit status of every orphan it reaps, sent as it reaps it, and
//     its last 256 sent again to each new supervisor (Exits): a
//     container's init is PID 1's child once its supervisor died, and
//     only PID 1 learns how it ended. Each names its process by pid and
//     start time, read from /proc while the orphan is a zombie: after a
//     pid wrap a pid alone would name a later process too;
//   - the control socket's listener, which the supervisor sends it once
//     it listens (Exits.KeepListener), and which the next one finds at
//     CTRL_FD (InheritedListener): the socket keeps its inode, which every
//     container has bind-mounted, and clients wait in its backlog meanwhile.
//
// That hand-over also says the supervisor is up: one that dies before it
// is a start-up failure, reported as before. CrashLimit crashes within
// CrashWindow are a crash loop: PID 1 kills what is left and reboots (in
// appengine mode, exits with ExitReboot, and the host stage boots again).
//
// The package also holds the appengine host stage in C (host_linux.c):
// `pantavisor appengine` run from a shell clones PID 1 of fresh
// pid+mount+net namespaces (which becomes the reaper), relays SIGINT,
// SIGTERM and SIGHUP to it and starts it again after a reboot exit, all
// before a Go runtime exists. cmd/pantavisor keeps the same stage in Go
// for when the C one declines (GoHostEnv, a help flag, no privileges to
// make namespaces).
package reaper

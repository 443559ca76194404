package reaper

// The reaper itself is reaper_linux.c: a constructor that runs before the
// Go runtime when PID1Env is set in PID 1's environment; host_linux.c is
// the appengine host stage, another one; importing C is what compiles and
// links them. The values below are the C stages' own (cstage_linux.h),
// read through cgo so that C and Go cannot disagree on them.

// #include "cstage_linux.h"
import "C"

import (
	"os"
	"strconv"
	"time"
)

// PID1Env, set to "1" in the environment of a process that is PID 1 (of
// the system, or of a fresh pid namespace), makes it the reaper: before
// the Go runtime starts, it removes the marker, re-executes the same
// binary with the same arguments as its only child (the supervisor, marked
// with ChildEnv), and from then on forwards the catchable termination and
// control signals to it (the list is in reaper_linux.c) and reaps every
// process that exits. When the supervisor exits on its own, PID 1 reaps
// what is left and exits with the supervisor's code (128+n if it was
// killed by signal n); when it crashed after it was up, PID 1 starts it
// again (doc.go). In any other process the marker does nothing.
const PID1Env = C.PID1_ENV

// ChildEnv marks the supervisor started by the reaper. The package
// removes it from the environment when it is initialised, so that the
// supervisor's own children do not inherit it.
const ChildEnv = C.CHILD_ENV

// GoHostEnv, set in the environment of `pantavisor appengine`, keeps the
// C host stage (host_linux.c) out of the way: the Go one then starts the
// device. The C stage otherwise takes every `appengine` command line that
// asks for no help, before the Go runtime starts, and declines by itself
// when it cannot make the namespaces.
const GoHostEnv = C.GO_HOST_ENV

// ExitReboot is the supervisor's exit code when the device must reboot. In
// appengine mode the host stage, C or Go, then starts the device again
// from scratch, unless it was stopped by a signal it relayed.
const ExitReboot = C.EXIT_REBOOT

// ExitPoweroff is the supervisor's exit code when the device must power
// off. In embedded mode PID 1 then syncs and powers the board off; any
// other exit of the supervisor but ExitReboot is a crash (see doc.go).
const ExitPoweroff = C.EXIT_POWEROFF

// ExitRebootTryboot is the supervisor's exit code when the device must
// reboot with the command "0 tryboot" (LINUX_REBOOT_CMD_RESTART2): the
// Raspberry Pi firmware then boots the try partition once (rpiab). PID 1
// of a device does it, or a plain reboot when the kernel refuses it (a
// normal boot: the try is rolled back). Embedded mode only: the host
// stages know no such reboot.
const ExitRebootTryboot = C.EXIT_REBOOT_TRYBOOT

// EmbeddedCmd is the command of an embedded device's supervisor: PID 1
// (the kernel's /init, or `pantavisor embedded` started as PID 1) runs
// `pantavisor embedded` as its child.
const EmbeddedCmd = C.EMBEDDED_CMD

// isChild is read once, before main, and the marker removed.
var isChild = os.Getenv(ChildEnv) == "1"

func init() {
	if isChild {
		os.Unsetenv(ChildEnv)
	}
}

// IsChild reports whether this process is the supervisor started by the
// reaper.
func IsChild() bool { return isChild }

// ExitReexec is the supervisor's exit code when it wants PID 1 to start
// it again from the binary's file (an in-place upgrade): the containers
// keep running and the new supervisor re-adopts them.
const ExitReexec = C.EXIT_REEXEC

// GenEnv is set by PID 1 in the environment of a supervisor it started
// again, to how many came before it (see Generation).
const GenEnv = C.GEN_ENV

// CrashLimit supervisor crashes within CrashWindow make PID 1 give up
// restarting it and reboot (in appengine mode: exit with ExitReboot, after
// killing what is left, so that the host stage boots the device again).
const (
	CrashLimit  = C.CRASH_LIMIT
	CrashWindow = C.CRASH_WINDOW * time.Second
)

// exitsFD is the supervisor's end of PID 1's exit channel.
const exitsFD = C.EXITS_FD

// generation is read once, before main. The variable stays for a
// re-execution of the supervisor by itself (driver.PrepareExeSealing); the
// supervisor removes it before it starts anything.
var generation = func() int {
	v, ok := os.LookupEnv(GenEnv)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return n
}()

// Generation is how many supervisors PID 1 started before this one: 0 at
// boot, more after a crash or an in-place upgrade, when the containers of
// the previous one still run and are to be re-adopted.
func Generation() int { return generation }

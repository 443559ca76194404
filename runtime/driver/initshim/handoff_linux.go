package initshim

// The hand-off itself is handoff_linux.c. What it and driver.OpenInit
// must agree on is defined in handoff_linux.h and read here through cgo,
// so that C and Go cannot disagree on it.

// #define _GNU_SOURCE
// #include "handoff_linux.h"
// #include "seccomp_linux.h"
import "C"

// InitName is the file name of the container init binary (cmd/pvinit),
// and the name of its memfd copy. The hand-off recognises the handle by
// it.
const InitName = C.INIT_NAME

// InitFd is the supervisor's descriptor for the handle, where the hand-off
// looks for it (/proc/<parent>/fd/<InitFd>). A process has far fewer
// descriptors open when it calls driver.OpenInit, early at start-up.
const InitFd = C.INIT_FD

// InitSeals are the seals a memfd copy of the container init carries:
// every write sealed (libcontainer's own rule for a sealed binary). The
// hand-off refuses a memfd without all of them.
const InitSeals = C.INIT_SEALS

// SeccompEnv is the variable through which the driver hands a container's
// system call filter to the seccomp exec (seccomp_linux.c): set, the
// container's command is run as "/proc/self/exe <command>..." and the
// exec loads the filter before it executes the command.
const SeccompEnv = C.SECCOMP_ENV

// What the hand-off (handoff_linux.c) and the supervisor that holds the
// handle (driver.OpenInit) must agree on. The values are defined here
// only: handoff_linux.go includes this header and exports them as Go
// constants (InitName, InitFd, InitSeals), which document them. The
// includer defines _GNU_SOURCE first, for the F_SEAL_* names.
#ifndef PV_HANDOFF_H
#define PV_HANDOFF_H

#include <fcntl.h>

#define INIT_NAME "pvinit"
#define INIT_FD 100
#define INIT_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

#endif

// What the C stages of this package (reaper_linux.c, host_linux.c), which
// run from constructors before the Go runtime, share with each other and
// with Go. The values are defined here only: reaper_linux.go includes this
// header and exports them as Go constants (PID1Env, ChildEnv, GoHostEnv,
// ExitReboot), which document them.
#ifndef PV_CSTAGE_H
#define PV_CSTAGE_H

#define PID1_ENV "PV_REAPER_PID1"
#define CHILD_ENV "PV_REAPER_CHILD"
#define GO_HOST_ENV "PV_HOST_STAGE_GO"

#define EXIT_REBOOT 4

// pv_logmsg writes "<who>: <what>: <strerror(errno)>" to stderr in one
// write (no stdio buffering before, or instead of, the Go runtime).
void pv_logmsg(const char *who, const char *what);

// pv_read_cmdline returns this process's argv as the kernel holds it
// (NULL-terminated, in one allocation that is never freed), or NULL.
char **pv_read_cmdline(void);

#endif

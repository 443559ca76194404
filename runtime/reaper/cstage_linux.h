// What the C stages of this package (reaper_linux.c, host_linux.c), which
// run from constructors before the Go runtime, share with each other and
// with Go. The values are defined here only: reaper_linux.go includes this
// header and exports them as Go constants (PID1Env, ChildEnv, GoHostEnv,
// ExitReboot, ExitPoweroff, EmbeddedCmd), which document them.
#ifndef PV_CSTAGE_H
#define PV_CSTAGE_H

#define PID1_ENV "PV_REAPER_PID1"
#define CHILD_ENV "PV_REAPER_CHILD"
#define GO_HOST_ENV "PV_HOST_STAGE_GO"

#define EXIT_REBOOT 4
#define EXIT_POWEROFF 5

// The command PID 1 of a device (the kernel's /init) runs its supervisor
// with; also what makes a PID 1 started by hand an embedded one.
#define EMBEDDED_CMD "embedded"

// pv_logmsg writes "<who>: <what>: <strerror(errno)>" to stderr in one
// write (no stdio buffering before, or instead of, the Go runtime).
void pv_logmsg(const char *who, const char *what);

// pv_say writes msg to stderr in one write.
void pv_say(const char *msg);

// pv_read_cmdline returns this process's argv as the kernel holds it
// (NULL-terminated, in one allocation that is never freed), or NULL.
char **pv_read_cmdline(void);

#endif

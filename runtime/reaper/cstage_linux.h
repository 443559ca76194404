// What the C stages of this package (reaper_linux.c, host_linux.c), which
// run from constructors before the Go runtime, share with each other and
// with Go. The values are defined here only: reaper_linux.go includes this
// header and exports them as Go constants (PID1Env, ChildEnv, GoHostEnv,
// ExitReboot, ExitPoweroff, ExitRebootTryboot, EmbeddedCmd), which
// document them.
#ifndef PV_CSTAGE_H
#define PV_CSTAGE_H

#define PID1_ENV "PV_REAPER_PID1"
#define CHILD_ENV "PV_REAPER_CHILD"
#define GO_HOST_ENV "PV_HOST_STAGE_GO"

#define EXIT_REBOOT 4
#define EXIT_POWEROFF 5
// The supervisor asks PID 1 of a device for a reboot with the command
// TRYBOOT_CMD (LINUX_REBOOT_CMD_RESTART2), as `reboot "0 tryboot"` does:
// the Raspberry Pi kernel's firmware driver (a downstream patch, in every
// Raspberry Pi OS and Yocto raspberrypi kernel; mainline has none) sets
// the firmware's one-shot tryboot flag from it, and the firmware boots
// the [tryboot] partition of autoboot.txt once (rpiab). The supervisor
// consumed its own flag before it exited. A kernel without that driver
// takes the command for a plain reboot, and the kernel refuses
// RESTART2 only without CAP_SYS_BOOT, when PID 1 reboots plainly: either
// way a normal boot, where the update is reported rolled back.
#define EXIT_REBOOT_TRYBOOT 7
#define TRYBOOT_CMD "0 tryboot"
// The supervisor asks PID 1 to start it again, from the binary's file
// (an in-place upgrade), keeping every container running.
#define EXIT_REEXEC 6

// A supervisor started again by PID 1 (after a crash, or EXIT_REEXEC)
// has GEN_ENV set to how many supervisors came before it: it re-adopts
// the running containers instead of booting.
#define GEN_ENV "_PV_SUPERVISOR_GEN"
// The supervisor's end of PID 1's channel of exit statuses (a
// SEQPACKET socket): one struct pv_exit per orphan PID 1 reaped, one
// message each.
#define EXITS_FD 98
// The control socket's listener, which PID 1 holds for the next
// supervisor: the supervisor sends it over the exit channel (SCM_RIGHTS,
// with the byte CTRL_MSG), and a supervisor PID 1 starts again finds it at
// CTRL_FD. The socket stays the same inode, which every container has
// bind-mounted, and connections made in the gap wait in its backlog.
#define CTRL_FD 97
#define CTRL_MSG 'C'
// Supervisor crashes within CRASH_WINDOW seconds that make PID 1 give up
// restarting it and reboot.
#define CRASH_LIMIT 3
#define CRASH_WINDOW 60

// One orphan PID 1 reaped. A pid alone does not name a process: once it
// is reaped, its pid goes to the next process, and a record of the old one
// must not be taken for the new one's (a container's init adopted after a
// pid wrap). The pid and the start time together do.
//
// The layout is the wire format, and fields are only ever appended: PID 1
// and its supervisor can be different builds (an in-place upgrade
// re-executes a new supervisor under the PID 1 that booted, a rollback an
// older one), and a message read into a shorter record is cut to its
// prefix (SEQPACKET). A PID 1 older than start was sent 8 bytes; the
// supervisor reads those with start 0.
struct pv_exit {
	int pid;
	int status; // as wait(2) reports it
	// start is field 22 of /proc/<pid>/stat (clock ticks since boot, as
	// libcontainer's InitProcessStartTime), read by PID 1 while the
	// process was a zombie; 0 when it could not be read (unknown).
	unsigned long long start;
};
_Static_assert(sizeof(struct pv_exit) == 16, "struct pv_exit is a wire format: 16 bytes");

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

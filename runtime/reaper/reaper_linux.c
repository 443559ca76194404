// The reaper: PID 1 of a pantavisor device, in C, run from a constructor
// before the Go runtime starts. See doc.go for why PID 1 is a process of
// its own; it is C because its whole job is a signal loop, and a Go
// runtime with the supervisor's dependencies would cost PID 1 its
// package initialisation and megabytes of resident memory for the life
// of the device (ARCHITECTURE.md, Performance notes). libcontainer's
// nsexec uses the same technique.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cstage_linux.h"

// Termination requests (busybox-style init uses SIGTERM to reboot, SIGUSR1
// to halt and SIGUSR2 to power off; SIGPWR comes from UPS daemons), plus
// SIGHUP, SIGQUIT, SIGWINCH and SIGALRM: all passed on to the supervisor.
static const int forwarded[] = {
	SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGPWR, SIGWINCH, SIGALRM,
};

static void logmsg(const char *what)
{
	pv_logmsg("reaper", what);
}

// reap_all collects every exited child without blocking and records the
// supervisor's status when it is among them.
static void reap_all(pid_t supervisor, int *done, int *status)
{
	for (;;) {
		int st;
		pid_t p = waitpid(-1, &st, WNOHANG);
		if (p > 0) {
			if (p == supervisor) {
				*done = 1;
				*status = st;
			}
			continue;
		}
		if (p < 0 && errno == EINTR)
			continue;
		return; // 0: nothing exited yet; ECHILD: no children at all
	}
}

// embedded_pid1 tells whether this process, PID 1, is the init of a
// device: `pantavisor embedded`, or the kernel's init (/init,
// /sbin/init, or a file named pantavisor, with no arguments). Any other
// program linking this package that runs as PID 1 with arguments (a test
// under unshare) is left alone.
static int embedded_pid1(char **argv)
{
	if (argv == NULL || argv[0] == NULL)
		return 0;
	if (argv[1] != NULL)
		return strcmp(argv[1], EMBEDDED_CMD) == 0;
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	return strcmp(base, "init") == 0 || strcmp(base, "pantavisor") == 0;
}

// end_device is how PID 1 of a device ends once its supervisor is gone:
// PID 1 must not exit (the kernel panics), so it powers off or reboots.
// After a clean supervisor exit the containers are stopped and storage is
// unmounted; after a crash whatever still runs is killed first, so that
// the next boot starts from a known state. (Re-adopting the containers of
// a crashed supervisor is not done yet: issue 16, item 5.)
static void end_device(int status)
{
	int cmd = RB_AUTOBOOT;
	if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_POWEROFF) {
		pv_say("pantavisor: powering off\n");
		cmd = RB_POWER_OFF;
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_REBOOT) {
		pv_say("pantavisor: rebooting\n");
	} else {
		pv_say("pantavisor: the supervisor ended unexpectedly: killing what is left and rebooting\n");
		kill(-1, SIGKILL);
		sleep(1);
		for (;;) { // reap what the kill ended
			pid_t p = waitpid(-1, NULL, WNOHANG);
			if (p <= 0)
				break;
		}
	}
	sync();
	reboot(cmd);
	// Not allowed, or it returned: nothing else to do but stay.
	pv_logmsg("reaper", "reboot");
	for (;;)
		pause();
}

__attribute__((constructor)) static void pv_reaper(void)
{
	const char *mark = getenv(PID1_ENV);
	int embedded = 0;
	if (mark == NULL && getpid() == 1 && getenv(CHILD_ENV) == NULL &&
	    getenv("_LIBCONTAINER_INITPIPE") == NULL) {
		// The kernel starts /init with /proc not mounted: the command
		// line and /proc/self/exe need it. (A container's init never
		// gets here: it is told by the variable above, before it could
		// mount anything.)
		if (access("/proc/self/exe", F_OK) != 0) {
			mkdir("/proc", 0555);
			if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
				pv_logmsg("reaper", "mount /proc");
		}
		char **args = pv_read_cmdline();
		embedded = embedded_pid1(args);
		if (!embedded)
			return;
	} else if (mark == NULL || strcmp(mark, "1") != 0 || getpid() != 1)
		return; // any other process: the Go program runs as usual
	unsetenv(PID1_ENV);

	// Block what the loop waits for before the fork, so that nothing
	// sent in between is lost. Blocked signals are queued even for the
	// init of a pid namespace, which would drop them if they were merely
	// left at their default action.
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		sigaddset(&set, forwarded[i]);
	sigprocmask(SIG_BLOCK, &set, &old);

	char **argv = pv_read_cmdline();
	static char *fallback[] = {"pantavisor", NULL};
	static char *supervisor_argv[] = {"pantavisor", EMBEDDED_CMD, NULL};
	if (embedded)
		argv = supervisor_argv;
	else if (argv == NULL) {
		logmsg("read /proc/self/cmdline");
		argv = fallback;
	}
	if (setenv(CHILD_ENV, "1", 1) != 0) {
		logmsg("setenv");
		_exit(1);
	}
	pid_t supervisor = fork();
	if (supervisor < 0) {
		logmsg("fork supervisor");
		_exit(1);
	}
	if (supervisor == 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		execv("/proc/self/exe", argv);
		logmsg("exec supervisor");
		_exit(127);
	}

	int done = 0, status = 0;
	while (!done) {
		siginfo_t si;
		int sig = sigwaitinfo(&set, &si);
		if (sig < 0)
			continue; // EINTR
		if (sig == SIGCHLD) {
			reap_all(supervisor, &done, &status);
			continue;
		}
		if (kill(supervisor, sig) < 0 && errno != ESRCH)
			logmsg("forward signal");
	}
	// Zombies that exited together with the supervisor; whatever still
	// runs dies with the pid namespace when PID 1 exits.
	reap_all(supervisor, &done, &status);
	if (embedded)
		end_device(status);
	if (WIFSIGNALED(status))
		_exit(128 + WTERMSIG(status));
	_exit(WEXITSTATUS(status));
}

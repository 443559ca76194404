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

__attribute__((constructor)) static void pv_reaper(void)
{
	const char *mark = getenv(PID1_ENV);
	if (mark == NULL || strcmp(mark, "1") != 0 || getpid() != 1)
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
	if (argv == NULL) {
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
	if (WIFSIGNALED(status))
		_exit(128 + WTERMSIG(status));
	_exit(WEXITSTATUS(status));
}

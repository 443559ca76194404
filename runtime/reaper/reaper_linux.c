// The reaper: PID 1 of a pantavisor device, in C, run from a constructor
// before the Go runtime starts. See doc.go for why PID 1 is a process of
// its own; it is C because its whole job is a signal loop, and a Go
// runtime with the supervisor's dependencies would cost PID 1 its
// package initialisation and some 15 MB of resident memory for the life
// of the device. libcontainer's nsexec uses the same technique.

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

// Keep in step with PID1Env and ChildEnv in reaper.go.
#define PID1_ENV "PV_REAPER_PID1"
#define CHILD_ENV "PV_REAPER_CHILD"

// Termination requests (busybox-style init uses SIGTERM to reboot, SIGUSR1
// to halt and SIGUSR2 to power off; SIGPWR comes from UPS daemons), plus
// SIGHUP, SIGQUIT, SIGWINCH and SIGALRM: all passed on to the supervisor.
// Keep in step with ForwardedSignals in reaper.go.
static const int forwarded[] = {
	SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGPWR, SIGWINCH, SIGALRM,
};

static void logmsg(const char *what)
{
	// One write: no stdio buffering in PID 1.
	char buf[256];
	int n = snprintf(buf, sizeof buf, "reaper: %s: %s\n", what, strerror(errno));
	if (n > 0)
		(void)!write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

// read_cmdline returns this process's argv as the kernel holds it, or NULL.
static char **read_cmdline(void)
{
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		if (buf == NULL) {
			close(fd);
			return NULL;
		}
		if (len == cap) {
			cap *= 2;
			char *nb = realloc(buf, cap + 1);
			if (nb == NULL)
				free(buf);
			buf = nb;
			continue;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			free(buf);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len == 0 || buf[len - 1] != '\0')
		buf[len++] = '\0';
	size_t argc = 0;
	for (size_t i = 0; i < len; i++)
		argc += buf[i] == '\0';
	char **argv = calloc(argc + 1, sizeof *argv);
	if (argv == NULL) {
		free(buf);
		return NULL;
	}
	for (size_t i = 0, a = 0; i < len && a < argc; a++) {
		argv[a] = buf + i;
		i += strlen(buf + i) + 1;
	}
	return argv;
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

	char **argv = read_cmdline();
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

// The appengine host stage in C: `pantavisor appengine ...` run from a
// shell. It starts the device as PID 1 of fresh pid+mount+net namespaces
// (the reaper, reaper_linux.c), relays SIGINT, SIGTERM and SIGHUP to it,
// runs it again when it exits for a reboot, and exits with its code.
//
// cmd/pantavisor has the same stage in Go (hostStage), which runs when
// this one declines: on a help flag, with GO_HOST_ENV set, or when the
// namespaces cannot be made (no root), so that every message about bad
// arguments or missing privileges comes from one place. It exists in C
// because the host stage is on the boot's critical path and does nothing
// but wait: as Go it spent milliseconds of every cold start in the Go
// runtime's start-up and the whole binary's package initialisation before
// its first system call of interest (ARCHITECTURE.md, Performance notes).
// Arguments are not parsed here: the supervisor parses the same command
// line and reports what is wrong.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cstage_linux.h"

// The signals relayed to the device, named as Go names them (the Go stage
// prints the same messages).
static const struct {
	int sig;
	const char *name;
} relayed[] = {
	{SIGINT, "interrupt"},
	{SIGTERM, "terminated"},
	{SIGHUP, "hangup"},
};

static const char *signame(int sig)
{
	for (size_t i = 0; i < sizeof relayed / sizeof relayed[0]; i++)
		if (relayed[i].sig == sig)
			return relayed[i].name;
	return "signal";
}

// wants_host_stage reports whether this process is `pantavisor appengine`
// started from outside the device, with nothing the Go stage must answer.
static int wants_host_stage(char **argv)
{
	if (getenv(PID1_ENV) != NULL || getenv(CHILD_ENV) != NULL || getenv(GO_HOST_ENV) != NULL)
		return 0;
	if (getpid() == 1 || argv[0] == NULL || argv[1] == NULL || strcmp(argv[1], "appengine") != 0)
		return 0;
	for (char **a = argv + 2; *a != NULL; a++) {
		if (strcmp(*a, "--") == 0)
			break;
		if (strcmp(*a, "-h") == 0 || strcmp(*a, "-help") == 0 || strcmp(*a, "--help") == 0 ||
		    strncmp(*a, "-h=", 3) == 0 || strncmp(*a, "-help=", 6) == 0 || strncmp(*a, "--help=", 7) == 0)
			return 0;
	}
	return 1;
}

// parent_alive is a pipe whose write end only this process holds: its
// read end reports POLLHUP once this process is gone. The device cannot
// ask getppid(), which answers 0 in its new pid namespace whether or not
// its parent lives. -1 when the pipe could not be made.
static int parent_alive[2] = {-1, -1};

// exit_if_orphaned closes the race of PR_SET_PDEATHSIG: a parent that died
// before the prctl sends no signal, so the child looks once, after it.
static void exit_if_orphaned(void)
{
	if (parent_alive[0] < 0)
		return;
	close(parent_alive[1]); // our copy would keep the pipe open
	struct pollfd p = {.fd = parent_alive[0], .events = POLLIN};
	int n;
	do
		n = poll(&p, 1, 0);
	while (n < 0 && errno == EINTR);
	if (n > 0 && (p.revents & (POLLHUP | POLLERR)) != 0) {
		pv_say("pantavisor: the host stage exited while the device started\n");
		_exit(1);
	}
	close(parent_alive[0]);
}

// start_device clones PID 1 of new namespaces, which executes this binary
// again as the reaper. It returns the pid, or -1 with errno set.
static pid_t start_device(char **argv, const sigset_t *old)
{
	// A fork into new namespaces; with no stack given, clone returns in
	// the child on a copy of this stack, as fork does. Nothing else runs
	// in this process yet (no threads), so no lock can be held.
	pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0);
	if (pid != 0)
		return pid;
	// Its own process group: a terminal's Ctrl-C reaches only the host
	// stage, which relays it once. It dies with the host stage.
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	exit_if_orphaned();
	sigprocmask(SIG_SETMASK, old, NULL);
	if (setenv(PID1_ENV, "1", 1) != 0) {
		pv_logmsg("pantavisor", "setenv");
		_exit(1);
	}
	execv("/proc/self/exe", argv);
	pv_logmsg("pantavisor", "exec in new namespaces");
	_exit(127);
}

// run_once waits for the device, relaying signals, and returns its exit
// code (128+n when killed by signal n); *stopped is set when a signal was
// relayed.
static int run_once(pid_t pid, const sigset_t *set, int *stopped)
{
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(set, &si);
		if (sig < 0)
			continue; // EINTR
		if (sig != SIGCHLD) {
			*stopped = 1;
			if (kill(pid, sig) < 0 && errno != ESRCH)
				pv_logmsg("pantavisor", "relay signal");
			continue;
		}
		int st;
		pid_t p = waitpid(pid, &st, WNOHANG);
		if (p < 0 && errno == EINTR)
			continue;
		if (p < 0) {
			pv_logmsg("pantavisor", "wait for the device");
			return 1;
		}
		if (p == 0)
			continue;
		if (WIFSIGNALED(st))
			return 128 + WTERMSIG(st);
		return WEXITSTATUS(st);
	}
}

__attribute__((constructor)) static void pv_host_stage(void)
{
	// Every container start executes this binary as libcontainer's init
	// (the trampoline to pvinit): leave it at once, without reading
	// /proc. Its environment is libcontainer's alone.
	if (getenv("_LIBCONTAINER_INITPIPE") != NULL)
		return;
	char **argv = pv_read_cmdline();
	if (argv == NULL || !wants_host_stage(argv))
		return; // the Go program runs as usual (and argv leaks: a few bytes)

	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (size_t i = 0; i < sizeof relayed / sizeof relayed[0]; i++)
		sigaddset(&set, relayed[i].sig);
	sigprocmask(SIG_BLOCK, &set, &old);
	if (pipe2(parent_alive, O_CLOEXEC) != 0) {
		// The device then relies on PR_SET_PDEATHSIG alone, whose
		// race (this process dying before the prctl) stays open.
		parent_alive[0] = parent_alive[1] = -1;
	}

	for (int boot = 0;; boot++) {
		pid_t pid = start_device(argv, &old);
		if (pid < 0 && boot == 0) {
			// No namespaces (no root, say): the Go stage tries the
			// same and says why it cannot.
			sigprocmask(SIG_SETMASK, &old, NULL);
			return;
		}
		if (pid < 0) {
			char msg[160];
			snprintf(msg, sizeof msg, "pantavisor: start in new namespaces (needs root): %s\n", strerror(errno));
			pv_say(msg);
			_exit(1);
		}
		int stopped = 0;
		int code = run_once(pid, &set, &stopped);
		if (code != EXIT_REBOOT || stopped)
			_exit(code);
		// A reboot in appengine mode: everything was torn down with the
		// namespaces; boot again, after a pause so that a revision that
		// asks for a reboot at every boot cannot spin the CPU.
		pv_say("pantavisor: reboot requested: starting again in 1 s\n");
		struct timespec pause = {1, 0};
		sigset_t sigs = set;
		sigdelset(&sigs, SIGCHLD);
		for (;;) {
			siginfo_t si;
			int sig = sigtimedwait(&sigs, &si, &pause);
			if (sig > 0) {
				char msg[96];
				snprintf(msg, sizeof msg, "pantavisor: %s during reboot: not starting again\n", signame(sig));
				pv_say(msg);
				_exit(0);
			}
			if (errno == EINTR)
				continue; // the pause restarts: at most a little longer
			break; // EAGAIN: the pause is over
		}
	}
}

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
#include <linux/reboot.h> // LINUX_REBOOT_CMD_RESTART2, which reboot(3) cannot pass
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
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

// The last orphans PID 1 reaped, oldest first: every supervisor PID 1
// starts gets them all, then each new one as it is reaped, so that the
// containers whose inits ended while no supervisor was there (PID 1 is
// their parent once theirs died) keep their exact exit status.
#define EXIT_RING 256
static struct pv_exit ring[EXIT_RING];
static unsigned ring_len, ring_next;
// exits_fd is PID 1's end of the running supervisor's channel, -1 when
// there is none.
static int exits_fd = -1;
// ctrl_fd is the control socket's listener, held for the next supervisor
// (CTRL_FD), -1 before the first supervisor sent it.
static int ctrl_fd = -1;
// sup_up says the running supervisor got far enough to be restarted after
// a crash: it sent the control socket (it parsed its arguments, booted or
// re-adopted, and listens), or it is itself a restarted one. One that dies
// before is a start-up failure, reported as before (its exit code: 2 is a
// usage error as much as a Go panic), unless a signal killed it: then the
// device reboots (appengine: the host stage boots it again).
static int sup_up;

static void send_exit(const struct pv_exit *e)
{
	if (exits_fd < 0)
		return;
	// Never block PID 1: a full channel drops the record, which the next
	// supervisor still gets from the ring.
	if (send(exits_fd, e, sizeof *e, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EAGAIN && errno != EINTR) {
		close(exits_fd);
		exits_fd = -1;
	}
}

static void note_exit(pid_t pid, int status, unsigned long long start)
{
	struct pv_exit e = {.pid = pid, .status = status, .start = start};
	ring[ring_next] = e;
	ring_next = (ring_next + 1) % EXIT_RING;
	if (ring_len < EXIT_RING)
		ring_len++;
	send_exit(&e);
}

static void send_ring(void)
{
	unsigned first = (ring_next + EXIT_RING - ring_len) % EXIT_RING;
	for (unsigned i = 0; i < ring_len; i++)
		send_exit(&ring[(first + i) % EXIT_RING]);
}

// take_fds receives what the supervisor sent on its channel: the control
// socket's listener. It never blocks.
static void take_fds(void)
{
	while (exits_fd >= 0) {
		char b = 0;
		struct iovec iov = {.iov_base = &b, .iov_len = 1};
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int))];
		} u;
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
		ssize_t n = recvmsg(exits_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; // nothing more, or the supervisor is gone
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		if (c == NULL || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int fd;
		memcpy(&fd, CMSG_DATA(c), sizeof fd);
		if (b != CTRL_MSG) {
			close(fd);
			continue;
		}
		if (ctrl_fd >= 0)
			close(ctrl_fd);
		ctrl_fd = fd;
		sup_up = 1;
	}
}

// stat_start returns field 22 (starttime) of the text of a
// /proc/<pid>/stat, 0 when it has none. The command name (field 2, in
// parentheses) may hold spaces and parentheses: fields are counted from
// its last ')'.
static unsigned long long stat_start(const char *stat)
{
	const char *p = strrchr(stat, ')');
	if (p == NULL)
		return 0;
	// Each turn moves p to the space before field `field`; the first
	// is the one right after ')'.
	for (int field = 3; field <= 22; field++) {
		p = strchr(p + 1, ' ');
		if (p == NULL)
			return 0;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(p + 1, &end, 10);
	if (end == p + 1 || errno != 0 || (*end != ' ' && *end != '\n' && *end != '\0'))
		return 0;
	return v;
}

// start_time returns the start time of process pid (see struct pv_exit),
// 0 when it cannot tell. Every failure is an unknown start time, never
// an error of PID 1's.
static unsigned long long start_time(pid_t pid)
{
	// /proc must be that of PID 1's pid namespace: before an appengine
	// supervisor mounted its own, /proc is the host's, where pid names
	// another process. In PID 1's own, /proc/self is "1".
	char self[8];
	if (readlink("/proc/self", self, sizeof self) != 1 || self[0] != '1')
		return 0;
	char path[32];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	// Field 22 comes within 512 bytes (a 64-byte name, 20 numbers of
	// at most 20 digits); the rest of a longer line is not needed.
	char buf[1024];
	ssize_t n;
	do
		n = read(fd, buf, sizeof buf - 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return stat_start(buf);
}

// next_exit reaps one exited child without blocking and returns its pid
// (0: none has exited yet; -1: no children at all), its wait status and,
// for any child but the supervisor, its start time (0: unknown). The
// start time is read while the child is a zombie, whose /proc entry stays
// until it is reaped: waitid(WNOWAIT) tells which child exited and leaves
// it there, waitpid then reaps that one.
static pid_t next_exit(pid_t supervisor, int *status, unsigned long long *start)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	*start = 0;
	int r;
	do
		r = waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT);
	while (r < 0 && errno == EINTR);
	if (r == 0 && si.si_pid == 0)
		return 0;
	pid_t want = -1; // waitid failed: reap as waitpid finds, start unknown
	if (r == 0) {
		want = si.si_pid;
		if (want != supervisor)
			*start = start_time(want);
	}
	pid_t p;
	do
		p = waitpid(want, status, WNOHANG);
	while (p < 0 && errno == EINTR);
	if (p <= 0 && want > 0) {
		// Seen exited, yet not reaped: whatever it was, reaping goes
		// on without it, and what is reaped instead has no start time.
		*start = 0;
		do
			p = waitpid(-1, status, WNOHANG);
		while (p < 0 && errno == EINTR);
	}
	return p < 0 ? -1 : p;
}

// reap_all collects every exited child without blocking, records the
// supervisor's status when it is among them and hands every other one to
// the supervisor.
static void reap_all(pid_t supervisor, int *done, int *status)
{
	for (;;) {
		int st;
		unsigned long long start;
		pid_t p = next_exit(supervisor, &st, &start);
		if (p <= 0)
			return; // 0: nothing exited yet; -1: no children at all
		if (p == supervisor) {
			*done = 1;
			*status = st;
		} else {
			note_exit(p, st, start);
		}
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

// kill_all kills every other process and reaps them.
static void kill_all(void)
{
	kill(-1, SIGKILL);
	sleep(1);
	for (;;) {
		pid_t p = waitpid(-1, NULL, WNOHANG);
		if (p <= 0)
			break;
	}
}

// SYNC_WAIT bounds PID 1's write-back before it reboots, in seconds;
// SYNC_WAIT_ENV (a test knob, as the supervisor's: the kernel passes
// unknown command-line parameters to init's environment) sets another.
#define SYNC_WAIT 30
#define SYNC_WAIT_ENV "_PV_TEST_SYNC_WAIT"

// sync_bounded writes the page cache back before the reboot, waiting for
// it at most SYNC_WAIT seconds. A sync on a disk that stopped answering
// never returns, and the task making it cannot be killed: made by PID 1
// itself, the device would never reboot (with no watchdog, or one in its
// startup mode, until someone cut its power). So a child makes it, which
// PID 1 leaves behind when it has not ended in time: the reboot does not
// wait for it. The supervisor has synced already (bounded too): what is
// left is written at once on a healthy disk.
static void sync_bounded(void)
{
	int wait = SYNC_WAIT;
	const char *knob = getenv(SYNC_WAIT_ENV);
	if (knob != NULL && atoi(knob) > 0)
		wait = atoi(knob);
	pid_t child = fork();
	if (child < 0) {
		// No task to spare: as before, by PID 1 itself.
		sync();
		return;
	}
	if (child == 0) {
		sync();
		_exit(0);
	}
	for (int i = 0; i < wait * 10; i++) {
		pid_t p = waitpid(child, NULL, WNOHANG);
		if (p == child || (p < 0 && errno == ECHILD))
			return;
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	pv_say("pantavisor: the storage's write-back has not ended: rebooting without it\n");
}

// end_device is how PID 1 of a device ends once its supervisor is gone
// for good: PID 1 must not exit (the kernel panics), so it powers off or
// reboots. After a clean supervisor exit the containers are stopped and
// storage is unmounted; after a crash PID 1 would not restart (a crash
// loop), whatever still runs is killed first, so that the next boot starts
// from a known state.
static void end_device(int status, int crash)
{
	int cmd = RB_AUTOBOOT, tryboot = 0;
	if (crash) {
		pv_say("pantavisor: the supervisor keeps failing: killing what is left and rebooting\n");
		kill_all();
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_POWEROFF) {
		pv_say("pantavisor: powering off\n");
		cmd = RB_POWER_OFF;
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_REBOOT) {
		pv_say("pantavisor: rebooting\n");
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_REBOOT_TRYBOOT) {
		pv_say("pantavisor: rebooting with \"" TRYBOOT_CMD "\" to try the update\n");
		tryboot = 1;
	} else {
		pv_say("pantavisor: the supervisor ended unexpectedly: killing what is left and rebooting\n");
		kill_all();
	}
	sync_bounded();
	if (tryboot && syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_RESTART2,
			       TRYBOOT_CMD) != 0)
		pv_logmsg("reaper", "reboot \"" TRYBOOT_CMD "\" refused, rebooting plainly (the committed revision boots)");
	reboot(cmd);
	// Not allowed, or it returned: nothing else to do but stay.
	pv_logmsg("reaper", "reboot");
	for (;;)
		pause();
}

// crashed tells whether the supervisor's end is a crash, which PID 1
// answers by starting it again (the containers keep running and the new
// one re-adopts them): a Go fatal error or unrecovered panic (exit 2), or
// death by a signal, unless PID 1 passed a stop request on to it. Any
// other exit (0, reboot, power-off, 1 for an error it reported) is the
// supervisor's decision.
static int crashed(int status, int stop_sent)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status) == 2;
	return WIFSIGNALED(status) && !stop_sent;
}

// is_stop says whether a signal PID 1 passes on asks the supervisor to
// stop the device (SIGHUP asks for a re-execution, SIGQUIT for a dump).
static int is_stop(int sig)
{
	return sig == SIGTERM || sig == SIGINT || sig == SIGUSR1 || sig == SIGUSR2 || sig == SIGPWR;
}

// A fork the kernel refuses for want of tasks or memory (EAGAIN: a pids
// limit, threads-max, pid_max; ENOMEM) is tried again, FORK_FIRST_WAIT_MS
// after the first refusal and twice as long each time up to
// FORK_MAX_WAIT_MS, FORK_TRIES times in all (about 30 s): containers'
// processes ending, or the orphans PID 1 reaps meanwhile, give the tasks
// back. Refused once and given up, a device rebooted and killed its
// containers for what may last a second, and at boot PID 1 exited: a
// kernel panic.
#define FORK_TRIES 20
#define FORK_FIRST_WAIT_MS 100
#define FORK_MAX_WAIT_MS 2000

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

// fork_patiently is fork, tried again while the kernel lacks tasks or
// memory for the child (see FORK_TRIES). Orphans are reaped between tries
// (their zombies hold tasks); their exits are kept for the supervisor.
static pid_t fork_patiently(void)
{
	long wait = FORK_FIRST_WAIT_MS;
	for (int try = 1;; try++) {
		pid_t pid = fork();
		if (pid >= 0 || (errno != EAGAIN && errno != ENOMEM) || try == FORK_TRIES)
			return pid;
		char msg[160];
		snprintf(msg, sizeof msg, "pantavisor: fork of the supervisor refused (%s): trying again in %ld ms (try %d of %d)\n",
			 strerror(errno), wait, try + 1, FORK_TRIES);
		pv_say(msg);
		sleep_ms(wait);
		int ignored = 0;
		reap_all(0, &ignored, &ignored);
		wait = wait * 2 > FORK_MAX_WAIT_MS ? FORK_MAX_WAIT_MS : wait * 2;
	}
}

// start_supervisor forks and executes the supervisor (generation gen:
// how many came before it) with a fresh exit channel at EXITS_FD, and
// sends it the orphans reaped so far.
static pid_t start_supervisor(char **argv, const char *exe, unsigned gen, const sigset_t *old)
{
	int sv[2] = {-1, -1};
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		logmsg("exit channel");
	pid_t pid = fork_patiently();
	if (pid < 0) {
		logmsg("fork supervisor");
		if (sv[0] >= 0) {
			close(sv[0]);
			close(sv[1]);
		}
		return -1;
	}
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, old, NULL);
		if (sv[1] == EXITS_FD)
			fcntl(EXITS_FD, F_SETFD, 0);
		else if (sv[1] >= 0 && dup2(sv[1], EXITS_FD) < 0)
			logmsg("exit channel");
		if (ctrl_fd == CTRL_FD)
			fcntl(CTRL_FD, F_SETFD, 0);
		else if (ctrl_fd >= 0 && dup2(ctrl_fd, CTRL_FD) < 0)
			logmsg("pass the control socket");
		if (gen > 0) {
			char buf[16];
			snprintf(buf, sizeof buf, "%u", gen);
			setenv(GEN_ENV, buf, 1);
		}
		execv(exe, argv);
		if (strcmp(exe, "/proc/self/exe") != 0) {
			logmsg("exec the supervisor's file; using PID 1's own");
			execv("/proc/self/exe", argv);
		}
		logmsg("exec supervisor");
		_exit(127);
	}
	if (sv[1] >= 0)
		close(sv[1]);
	if (exits_fd >= 0)
		close(exits_fd);
	exits_fd = sv[0];
	sup_up = gen > 0;
	if (exits_fd >= 0) {
		// SIGIO wakes the loop when the supervisor sends something.
		fcntl(exits_fd, F_SETOWN, getpid());
		fcntl(exits_fd, F_SETFL, O_NONBLOCK | O_ASYNC);
		take_fds();
	}
	send_ring();
	return pid;
}

// crash_loop records a crash now and says whether CRASH_LIMIT of them
// happened within CRASH_WINDOW seconds.
static int crash_loop(void)
{
	static struct timespec at[CRASH_LIMIT];
	static unsigned n;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	at[n % CRASH_LIMIT] = now;
	n++;
	if (n < CRASH_LIMIT)
		return 0;
	// at[n % CRASH_LIMIT] is now the oldest of the last CRASH_LIMIT.
	return now.tv_sec - at[n % CRASH_LIMIT].tv_sec < CRASH_WINDOW;
}

// start_failed ends PID 1 when it cannot start a first supervisor: a
// device's PID 1 must not exit (the kernel panics, and without panic=
// stays there), it reboots; elsewhere it exits 1.
static void start_failed(int embedded)
{
	if (embedded) {
		pv_say("pantavisor: the supervisor could not be started\n");
		end_device(0, 1);
	}
	_exit(1);
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
	sigaddset(&set, SIGIO);
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
		start_failed(embedded);
	}
	// The binary's file, for an in-place upgrade (EXIT_REEXEC): a new
	// file renamed over it is what the next supervisor runs. A crashed
	// supervisor is started again from PID 1's own binary instead.
	static char file[4096];
	ssize_t fl = readlink("/proc/self/exe", file, sizeof file - 1);
	file[fl > 0 ? fl : 0] = '\0';
	if (fl > 0 && strstr(file, " (deleted)") != NULL)
		file[0] = '\0';

	unsigned gen = 0;
	int stop_sent = 0, give_up = 0, killed_starting = 0, status = 0;
	pid_t supervisor = start_supervisor(argv, "/proc/self/exe", gen, &old);
	if (supervisor < 0)
		start_failed(embedded);
	for (;;) {
		int done = 0;
		while (!done) {
			siginfo_t si;
			int sig = sigwaitinfo(&set, &si);
			if (sig < 0)
				continue; // EINTR
			if (sig == SIGCHLD || sig == SIGIO) {
				take_fds();
				reap_all(supervisor, &done, &status);
				continue;
			}
			stop_sent |= is_stop(sig);
			if (kill(supervisor, sig) < 0 && errno != ESRCH)
				logmsg("forward signal");
		}
		take_fds(); // what it sent just before it ended
		int reexec = WIFEXITED(status) && WEXITSTATUS(status) == EXIT_REEXEC;
		if (!sup_up && WIFSIGNALED(status) && !stop_sent) {
			// Killed while it booted (the OOM killer, an operator's
			// SIGKILL): not a start-up failure it could report, and
			// not one to re-adopt after (it left the boot half done).
			// A device reboots; so does this one.
			killed_starting = WTERMSIG(status);
			break;
		}
		if (!reexec && !(sup_up && crashed(status, stop_sent)))
			break;
		if (!reexec && crash_loop()) {
			give_up = 1;
			break;
		}
		pv_say(reexec ? "pantavisor: starting the supervisor again from its file\n"
			       : "pantavisor: the supervisor crashed: starting it again; the containers keep running\n");
		gen++;
		// A stop forwarded to the supervisor that ended was its own:
		// the next one dying of a signal is a crash again.
		stop_sent = 0;
		supervisor = start_supervisor(argv, reexec && file[0] ? file : "/proc/self/exe", gen, &old);
		if (supervisor < 0) {
			give_up = 1;
			break;
		}
	}
	// Zombies that exited together with the supervisor; whatever still
	// runs dies with the pid namespace when PID 1 exits.
	int ignored = 0;
	reap_all(0, &ignored, &ignored);
	if (embedded)
		end_device(status, give_up);
	if (give_up || killed_starting) {
		// As on a device: what the crashed supervisors left is killed,
		// and the host stage boots the device again.
		if (give_up)
			pv_say("pantavisor: the supervisor keeps failing: rebooting\n");
		else {
			char msg[128];
			snprintf(msg, sizeof msg, "pantavisor: the supervisor was killed (signal %d) while it started: rebooting\n",
				 killed_starting);
			pv_say(msg);
		}
		kill_all();
		_exit(EXIT_REBOOT);
	}
	if (WIFSIGNALED(status))
		_exit(128 + WTERMSIG(status));
	_exit(WEXITSTATUS(status));
}

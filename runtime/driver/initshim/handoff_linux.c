// The hand-off to the container init binary (cmd/pvinit), run from a
// constructor before libcontainer's nsexec and before the Go runtime.
//
// libcontainer makes every container's init by re-executing the program
// that starts it ("<binary> init"). For pantavisor that is the whole Go
// program, whose runtime start and package initialisation (actors,
// metrics, protobuf descriptors, HTTP, ...) cost each start CPU that
// pvinit's does not (ARCHITECTURE.md, Performance notes), before
// libcontainer's init code even runs. The supervisor can instead hold a
// read-only handle on pvinit, a program that is nothing but libcontainer's
// init (see driver.OpenInit), at a known descriptor; this constructor,
// finding it there, replaces the process with pvinit before anything else
// happens. pvinit then does exactly what this binary would have done, from
// its own constructor (nsexec) on.
//
// Without such a handle, or when the exec fails, the constructor returns
// and this binary is the init, as libcontainer intends.

#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h> // ST_RDONLY, the flag fstatfs reports too
#include <sys/syscall.h>
#include <unistd.h>

#include "handoff_linux.h"

// What /proc shows as the target of a memfd created as INIT_NAME (the
// supervisor's copy where overlayfs is refused): a memfd is in no
// directory, hence "(deleted)".
#define MEMFD_NAME "/memfd:" INIT_NAME " (deleted)"

extern char **environ;

// is_init_handle reports whether fd, opened O_PATH, is the supervisor's
// handle on pvinit: a regular file named pvinit that nobody can write
// through, either on a read-only overlayfs mount or a memfd with every
// write sealed.
static int is_init_handle(int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return 0;
	char link[64], target[256];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof target - 1);
	if (n <= 0)
		return 0;
	target[n] = '\0';
	if (strcmp(target, MEMFD_NAME) == 0) {
		// Seals can only be read through a real descriptor; a regular
		// file opens without blocking.
		int rd = open(link, O_RDONLY | O_CLOEXEC);
		if (rd < 0)
			return 0;
		int seals = fcntl(rd, F_GET_SEALS);
		close(rd);
		return seals >= 0 && (seals & INIT_SEALS) == INIT_SEALS;
	}
	const char *base = strrchr(target, '/');
	if (base == NULL || strcmp(base + 1, INIT_NAME) != 0)
		return 0;
	struct statfs fs;
	return fstatfs(fd, &fs) == 0 && fs.f_type == OVERLAYFS_SUPER_MAGIC && (fs.f_flags & ST_RDONLY);
}

// reset_ignored_signals gives every signal the supervisor ignores back its
// default action. An ignored signal stays ignored across execve, so a
// supervisor started under nohup (SIGHUP ignored) would otherwise pass
// that on to every container's init and its children, where a SIGHUP
// must terminate. Handled signals are reset by execve already, and the
// Go runtime of the supervisor restores the signal mask in the child.
static void reset_ignored_signals(void)
{
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction old;
		if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
			signal(sig, SIG_DFL);
	}
}

__attribute__((constructor(101))) static void pv_init_handoff(void)
{
	// libcontainer marks every init (and every process it joins to a
	// container) with its init pipe; nothing else concerns us.
	if (getenv("_LIBCONTAINER_INITPIPE") == NULL)
		return;
	reset_ignored_signals();
	// libcontainer lets no descriptor of the supervisor leak into an init
	// (it marks them all close-on-exec first), so the handle is opened
	// anew from the supervisor's table: it is this process's parent.
	// O_PATH: whatever is there is looked at, never opened (a fifo, such
	// as libcontainer's exec fifo, would block an open, and opening it is
	// a signal to libcontainer).
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)getppid(), INIT_FD);
	int fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return;
	// pvinit itself comes here too, and must not hand off to itself.
	struct stat self, handle;
	int is_self = stat("/proc/self/exe", &self) == 0 && fstat(fd, &handle) == 0 &&
		      self.st_dev == handle.st_dev && self.st_ino == handle.st_ino;
	if (!is_self && is_init_handle(fd)) {
		char *argv[] = {INIT_NAME, "init", NULL};
		syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
	}
	// Still here: no handle, or the exec was refused. Be the init
	// ourselves.
	close(fd);
}

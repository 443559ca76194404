// The seccomp exec: loads a container's system call filter (lxc.seccomp.
// profile) and executes the container's command under it, from a
// constructor, before the Go runtime starts.
//
// libcontainer loads a filter only through libseccomp (runtime/seccomp
// says why that is not used), and nothing of its init runs between its
// last preparation and the exec of the container's command. The driver
// therefore asks libcontainer to execute this binary again instead
// ("/proc/self/exe <command>...", with the filter in SECCOMP_ENV): this
// constructor, finding the variable, loads the filter and executes the
// real command in its place. The filter is loaded last, after
// libcontainer's mounts, credentials and capabilities, as LXC loads it
// last; the command runs as the same process, with the same descriptors
// and environment (less SECCOMP_ENV).

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "seccomp_linux.h"

// The kernel's limit on a filter's length.
#define MAX_INSNS 4096

// What the command line of the re-executed init may be: libcontainer's
// exec takes what execve takes.
#define MAX_CMDLINE (2 << 20)

static void fail(const char *what, int err)
{
	dprintf(2, "pantavisor: lxc.seccomp.profile: %s: %s\n", what, strerror(err));
	_exit(126);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

// read_argv returns this process's arguments, read from /proc (a
// constructor is given none by musl).
static char **read_argv(void)
{
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail("open /proc/self/cmdline", errno);
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		if (buf == NULL)
			fail("read the command line", ENOMEM);
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail("read /proc/self/cmdline", errno);
		if (r == 0)
			break;
		n += r;
		if (n == cap) {
			if (cap >= MAX_CMDLINE)
				fail("read the command line", E2BIG);
			cap *= 2;
			buf = realloc(buf, cap + 1);
		}
	}
	close(fd);
	buf[n] = '\0';
	size_t argc = 0;
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			argc++;
	char **argv = calloc(argc + 1, sizeof *argv);
	if (argv == NULL)
		fail("read the command line", ENOMEM);
	char *p = buf;
	for (size_t i = 0; i < argc; i++) {
		argv[i] = p;
		p += strlen(p) + 1;
	}
	return argv;
}

__attribute__((constructor(102))) static void pv_seccomp_exec(void)
{
	const char *hex = getenv(SECCOMP_ENV);
	// libcontainer's own init (and anything joined to a container) is
	// marked with its init pipe: the filter is for the command only.
	if (hex == NULL || getenv("_LIBCONTAINER_INITPIPE") != NULL)
		return;
	size_t len = strlen(hex);
	size_t insns = len / (2 * sizeof(struct sock_filter));
	if (len == 0 || len % (2 * sizeof(struct sock_filter)) != 0 || insns > MAX_INSNS)
		fail("the filter handed over is malformed", EINVAL);
	struct sock_filter *filter = malloc(len / 2);
	if (filter == NULL)
		fail("decode the filter", ENOMEM);
	unsigned char *out = (unsigned char *)filter;
	for (size_t i = 0; i < len / 2; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			fail("the filter handed over is malformed", EINVAL);
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	unsetenv(SECCOMP_ENV);
	char **argv = read_argv();
	if (argv[0] == NULL || argv[1] == NULL)
		fail("no command to run", EINVAL);

	struct sock_fprog prog = {.len = (unsigned short)insns, .filter = filter};
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
		// Without CAP_SYS_ADMIN the kernel takes a filter only from a
		// process that can gain no privileges: as libseccomp does by
		// default, set no_new_privs rather than run unfiltered.
		if (errno != EACCES)
			fail("load the filter", errno);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
			fail("set no_new_privs to load the filter", errno);
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
			fail("load the filter", errno);
	}
	execvp(argv[1], argv + 1);
	int err = errno;
	dprintf(2, "pantavisor: exec %s: %s\n", argv[1], strerror(err));
	_exit(err == ENOENT ? 127 : 126);
}

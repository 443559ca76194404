// Helpers shared by the C stages of this package; see cstage_linux.h.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cstage_linux.h"

void pv_logmsg(const char *who, const char *what)
{
	char buf[256];
	int n = snprintf(buf, sizeof buf, "%s: %s: %s\n", who, what, strerror(errno));
	if (n > 0)
		(void)!write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

void pv_say(const char *msg)
{
	(void)!write(2, msg, strlen(msg));
}

char **pv_read_cmdline(void)
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

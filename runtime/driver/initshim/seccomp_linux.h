// What the seccomp exec (seccomp_linux.c) and the driver that asks for it
// (runtime/driver, Translate) must agree on, exported to Go as SeccompEnv.
#ifndef PV_SECCOMP_H
#define PV_SECCOMP_H

// The variable that carries a container's filter to its init: the raw
// sock_filter array in hexadecimal, in the machine's byte order.
#define SECCOMP_ENV "_PV_SECCOMP"

#endif

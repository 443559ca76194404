package ctrl

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// soPeerPidfd is SO_PEERPIDFD (Linux 6.5+), which golang.org/x/sys does not
// name yet: a pidfd for the very process that called connect(2).
const soPeerPidfd = 77

// peerProcess returns the peer's pid and a pidfd that pins the peer, so
// that after reading /proc/<pid> the caller can ask peerAlive whether the
// pid still named the same process. The pidfd is -1 when the peer is
// outside our pid namespace (pid 0). The caller closes it.
//
// SO_PEERPIDFD gives the pidfd of the process that connected. Where the
// kernel lacks it, pidfd_open(SO_PEERCRED pid) is the fallback, which is
// weaker: a peer that exited before pidfd_open, its pid reused, pins the
// new process, which is then trusted as the peer.
func peerProcess(c net.Conn) (pid, pidfd int, err error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, -1, fmt.Errorf("get peer pid: %T is not a unix socket connection", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, -1, fmt.Errorf("get peer pid: %w", err)
	}
	var cred *unix.Ucred
	var credErr, fdErr error
	pidfd = -1
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr != nil || cred.Pid == 0 {
			return
		}
		pidfd, fdErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, soPeerPidfd)
	}); err != nil {
		return 0, -1, fmt.Errorf("get peer pid: %w", err)
	}
	if credErr != nil {
		return 0, -1, fmt.Errorf("get peer pid: SO_PEERCRED: %w", credErr)
	}
	if cred.Pid == 0 {
		return 0, -1, nil
	}
	if fdErr != nil {
		if !pidfdUnsupported(fdErr) {
			return 0, -1, fmt.Errorf("get peer pidfd: SO_PEERPIDFD: %w", fdErr)
		}
		pidfd, fdErr = unix.PidfdOpen(int(cred.Pid), 0)
		if fdErr != nil {
			return 0, -1, fmt.Errorf("get peer pidfd: pidfd_open(%d): %w", cred.Pid, fdErr)
		}
	}
	return int(cred.Pid), pidfd, nil
}

// pidfdUnsupported tells a kernel without SO_PEERPIDFD (ENOPROTOOPT, as
// for any option a kernel does not know), where pidfd_open of the
// SO_PEERCRED pid is the next best pin, from a peer that is gone: the
// kernels that have it answer EINVAL (ESRCH on later ones) when the peer
// has been reaped, and pidfd_open would then pin whatever process reuses
// its pid, which would be trusted as the peer.
func pidfdUnsupported(err error) bool { return errors.Is(err, unix.ENOPROTOOPT) }

// peerAlive reports whether the process pidfd pins still runs; when it
// does, its pid was not reused, so what /proc/<pid> said was about it.
func peerAlive(pidfd int) error {
	if pidfd < 0 {
		return nil
	}
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
		return fmt.Errorf("peer exited during lookup: %w", err)
	}
	return nil
}

// closePidfd closes a pidfd from peerProcess; -1 is no pidfd.
func closePidfd(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// openPidfd pins the process pid names now.
func openPidfd(pid int) (int, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open(%d): %w", pid, err)
	}
	return fd, nil
}

// sourceByPidNS names a connection's source by its peer's pid namespace:
// the host when it is ours (pvcontrol on the device) or the peer is
// outside it (pid 0: above us, the host of an appengine instance), else
// the inode of the namespace below ours it is in (topPidNS), which every
// process of a container shares, in namespaces of its own too. A
// peer whose credentials or namespace cannot be read (gone already) is a
// guest of source 0. It costs a getsockopt, an open and two or three
// calls more at accept, before the caller resolver. nil when our own
// namespace cannot be read: every connection is then the host's, under
// the one cap.
func sourceByPidNS() func(net.Conn) connSource {
	self, err := pidNSOf("self")
	if err != nil {
		return nil
	}
	return func(c net.Conn) connSource {
		uc, ok := c.(*net.UnixConn)
		if !ok {
			return connSource{}
		}
		raw, err := uc.SyscallConn()
		if err != nil {
			return connSource{}
		}
		var cred *unix.Ucred
		var credErr error
		if err := raw.Control(func(fd uintptr) {
			cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		}); err != nil || credErr != nil {
			return connSource{}
		}
		if cred.Pid == 0 {
			return connSource{host: true}
		}
		ns, err := topPidNS(strconv.Itoa(int(cred.Pid)), self)
		if err != nil {
			return connSource{}
		}
		return connSource{host: ns == self, key: ns}
	}
}

// nsGetParent is the NS_GET_PARENT ioctl (_IO(0xb7, 0x2)): a namespace's
// parent, for a pid or user namespace.
const nsGetParent = 0xb702

// maxPidNSDepth is how deep the kernel nests pid namespaces.
const maxPidNSDepth = 32

// topPidNS is the inode of the pid namespace of /proc/<pid> that is a
// child of self (pantavisor's): the container's own, however deep the
// process nested namespaces of its own under it; self when the process
// is in ours; its own when it is above or beside ours. A container that
// can make pid namespaces (with CAP_SYS_ADMIN, or in an unprivileged user
// namespace) would otherwise count as one source per namespace, each with
// its own cap, and take every slot left to guests (a reviewer's test:
// four namespaces of 64 connections, then a fifth refused).
func topPidNS(pid string, self uint64) (uint64, error) {
	fd, err := unix.Open("/proc/"+pid+"/ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open pid namespace of %s: %w", pid, err)
	}
	defer func() { unix.Close(fd) }()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("stat pid namespace of %s: %w", pid, err)
	}
	for range maxPidNSDepth {
		if st.Ino == self {
			return self, nil
		}
		parent, err := unix.IoctlRetInt(fd, nsGetParent)
		if err != nil {
			// EPERM: the parent is outside our scope, so this
			// namespace is not below ours.
			return st.Ino, nil
		}
		var pst unix.Stat_t
		if err := unix.Fstat(parent, &pst); err != nil {
			unix.Close(parent)
			return 0, fmt.Errorf("stat parent pid namespace of %s: %w", pid, err)
		}
		if pst.Ino == self {
			unix.Close(parent)
			return st.Ino, nil
		}
		unix.Close(fd)
		fd, st = parent, pst
	}
	return st.Ino, nil
}

// pidNSOf is the inode of the pid namespace of /proc/<pid>.
func pidNSOf(pid string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+pid+"/ns/pid", &st); err != nil {
		return 0, fmt.Errorf("stat pid namespace of %s: %w", pid, err)
	}
	return st.Ino, nil
}

// refuseNow refuses c without waiting, in the accept loop: it reads what
// the client sent already (its request head, when it came before the
// accept, as it does when a storm queues connections), writes the
// refusal and closes c. Reading first means the close leaves nothing
// unread, which would reset the connection and lose the answer; not
// waiting means a client opening connections without end holds no
// descriptor of the server's. Both calls are non-blocking.
func refuseNow(c net.Conn) {
	defer c.Close()
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		buf := make([]byte, 4096)
		for range 16 {
			n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			if err != nil || n <= 0 {
				break
			}
		}
		_, _ = unix.SendmsgN(int(fd), refusal, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
	})
}

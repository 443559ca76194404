package xconnect

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const msgNoSignal = unix.MSG_NOSIGNAL

// RawRecvmsg is recvmsg(2) on a non-blocking socket, as RawRead: into p,
// with control messages into oob (at least one byte), descriptors
// received close-on-exec as Go's own reads receive them, and no address
// asked for, so that it allocates nothing; made again when a signal
// interrupted it. It returns the bytes, the control bytes and the
// message flags.
func RawRecvmsg(fd int, p, oob []byte) (n, oobn, flags int, err error) {
	var iov unix.Iovec
	iov.Base = &p[0]
	iov.SetLen(len(p))
	var msg unix.Msghdr
	msg.Iov = &iov
	msg.SetIovlen(1)
	msg.Control = &oob[0]
	msg.SetControllen(len(oob))
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)),
			uintptr(unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT))
		switch e {
		case 0:
			return int(r), int(msg.Controllen), int(msg.Flags), nil
		case syscall.EINTR:
		default:
			return 0, 0, 0, e
		}
	}
}

package xconnect

import (
	"syscall"
	"unsafe"
)

// RawRead and RawWrite read and write a connected non-blocking socket:
// recvfrom(2) and sendto(2) with no address, which go to the socket
// straight, where read(2) and write(2) take the file layer's way to it
// (about a sixth of a small read's time in the kernel, in a profile of
// the http proxy). They skip the scheduler's bookkeeping for a system
// call that may block (entersyscall/exitsyscall): these never block, and
// sysmon, which takes the P from a system call it finds under way, has
// nothing to hand over. A write to a peer that has gone fails with EPIPE
// and raises no SIGPIPE (MSG_NOSIGNAL). A call a signal interrupted is
// made again. The caller holds fd open: inside a RawConn callback on it.
func RawRead(fd int, p []byte) (int, error) { return rawIO(syscall.SYS_RECVFROM, fd, p, 0) }

// RawWrite: see RawRead.
func RawWrite(fd int, p []byte) (int, error) { return rawIO(syscall.SYS_SENDTO, fd, p, msgNoSignal) }

func rawIO(trap uintptr, fd int, p []byte, flags uintptr) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, _, e := syscall.RawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), flags, 0, 0)
		switch e {
		case 0:
			return int(n), nil
		case syscall.EINTR:
		default:
			return -1, e
		}
	}
}

// RawWriteNow writes p to a non-blocking socket with RawWrite for as long
// as the socket takes it: n < len(p) with a nil error means it is full
// (EAGAIN), and the rest waits for the caller.
func RawWriteNow(fd int, p []byte) (n int, err error) {
	for n < len(p) {
		k, err := RawWrite(fd, p[n:])
		switch {
		case err == syscall.EAGAIN:
			return n, nil
		case err != nil:
			return n, err
		}
		n += k
	}
	return n, nil
}

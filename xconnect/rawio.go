package xconnect

import (
	"syscall"
	"unsafe"
)

// RawRead and RawWrite are read(2) and write(2) on a non-blocking socket
// without the scheduler's bookkeeping for a system call that may block
// (entersyscall/exitsyscall): these never block, and sysmon, which takes
// the P from a system call it finds under way, has nothing to hand over.
// The caller holds fd open: inside a RawConn callback on it.
func RawRead(fd int, p []byte) (int, error) { return rawIO(syscall.SYS_READ, fd, p) }

// RawWrite: see RawRead.
func RawWrite(fd int, p []byte) (int, error) { return rawIO(syscall.SYS_WRITE, fd, p) }

func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// RawWriteNow writes p to a non-blocking socket with RawWrite for as long
// as the socket takes it: n < len(p) with a nil error means it is full
// (EAGAIN), and the rest waits for the caller. An interrupted write is
// made again.
func RawWriteNow(fd int, p []byte) (n int, err error) {
	for n < len(p) {
		k, err := RawWrite(fd, p[n:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return n, nil
		case err != nil:
			return n, err
		}
		n += k
	}
	return n, nil
}

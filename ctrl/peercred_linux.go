package ctrl

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// peerPid returns the pid of the process that connected c, as SO_PEERCRED
// recorded it at connect(2) and translated into our pid namespace (0 when
// the peer is outside it).
func peerPid(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("get peer pid: %T is not a unix socket connection", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("get peer pid: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, fmt.Errorf("get peer pid: %w", err)
	}
	if credErr != nil {
		return 0, fmt.Errorf("get peer pid: SO_PEERCRED: %w", credErr)
	}
	return int(cred.Pid), nil
}

//go:build !linux

package ctrl

import (
	"errors"
	"net"
)

// peerPid is Linux-only: elsewhere every caller is unknown, hence denied.
func peerPid(net.Conn) (int, error) {
	return 0, errors.New("get peer pid: SO_PEERCRED needs Linux")
}

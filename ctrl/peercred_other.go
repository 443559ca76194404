//go:build !linux

package ctrl

import (
	"errors"
	"net"
)

// peerProcess is Linux-only: elsewhere every caller is unknown, hence
// denied.
func peerProcess(net.Conn) (int, int, error) {
	return 0, -1, errors.New("get peer pid: SO_PEERCRED needs Linux")
}

func peerAlive(int) error { return nil }

func closePidfd(int) {}

func openPidfd(int) (int, error) { return -1, errors.New("pidfd_open needs Linux") }

// sourceByPidNS is Linux-only: elsewhere every connection is under the
// one cap.
func sourceByPidNS() func(net.Conn) connSource { return nil }

// refuseNow closes c unanswered: answering without blocking the accept
// loop needs Linux's calls here.
func refuseNow(c net.Conn) { c.Close() }

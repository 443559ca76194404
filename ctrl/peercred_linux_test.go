package ctrl

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// Only a kernel without SO_PEERPIDFD falls back to pidfd_open of the
// SO_PEERCRED pid. A kernel that has it answers EINVAL (or ESRCH) for a
// peer already reaped; the fallback would then pin whatever process
// reuses that pid and trust it as the peer. Before, EINVAL fell back.
func TestOnlyAMissingPeerPidfdFallsBack(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{unix.ENOPROTOOPT, true},
		{fmt.Errorf("getsockopt: %w", unix.ENOPROTOOPT), true},
		{unix.EINVAL, false},
		{unix.ESRCH, false},
		{unix.EBADF, false},
	} {
		if got := pidfdUnsupported(tc.err); got != tc.want {
			t.Errorf("%v: fallback %v, want %v", tc.err, got, tc.want)
		}
	}
}

package driver

import (
	"fmt"
	"os"
	"strconv"

	"github.com/opencontainers/runc/libcontainer/exeseal"
	"golang.org/x/sys/unix"
)

// sealedExeEnv carries the descriptor of the sealed copy across the
// re-exec, so the new process can close it (and knows not to loop).
const sealedExeEnv = "_PV_SEALED_EXE_FD"

// EnsureSealedExe re-executes the process from a sealed in-memory copy of
// its binary (a memfd with all write seals), unless it already runs from
// one. libcontainer protects against CVE-2019-5736 by starting each
// container's init from a sealed copy of /proc/self/exe, and makes that
// copy on every start unless the running binary already is one; after this
// call it never has to.
//
// Call it at the very start of main, before any goroutine, file or lock
// matters: on success in the original process it does not return (the
// process image is replaced, with the same pid, arguments and environment).
// It returns nil in the re-executed process and an error if the copy or
// the exec fails, in which case the process simply continues unsealed.
//
// Cost: the copy lives in RAM (shmem) for the life of the process, about
// the binary's size, and os.Executable then names the memfd, not a path
// on disk. The copy is inherited across exec, so a PID-1 reaper that calls
// this before re-executing its supervisor pays for it once.
func EnsureSealedExe() error {
	if fd := os.Getenv(sealedExeEnv); fd != "" {
		os.Unsetenv(sealedExeEnv)
		if n, err := strconv.Atoi(fd); err == nil && n > 2 {
			unix.Close(n) // the mapping of the executable keeps the memfd alive
		}
		if exeseal.IsSelfExeCloned() {
			return nil
		}
		return fmt.Errorf("seal exe: re-executed, but /proc/self/exe is not a sealed copy")
	}
	if exeseal.IsSelfExeCloned() {
		return nil
	}
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("seal exe: %w", err)
	}
	defer self.Close()
	fi, err := self.Stat()
	if err != nil {
		return fmt.Errorf("seal exe: %w", err)
	}
	sealed, err := exeseal.CloneBinary(self, fi.Size(), "/proc/self/exe", os.TempDir())
	if err != nil {
		return fmt.Errorf("seal exe: %w", err)
	}
	defer sealed.Close()
	// The exec'd image must stay reachable through a descriptor that
	// survives exec: dup without O_CLOEXEC.
	fd, err := unix.FcntlInt(sealed.Fd(), unix.F_DUPFD, 3)
	if err != nil {
		return fmt.Errorf("seal exe: dup: %w", err)
	}
	env := append(os.Environ(), sealedExeEnv+"="+strconv.Itoa(fd))
	err = unix.Exec("/proc/self/fd/"+strconv.Itoa(fd), os.Args, env)
	unix.Close(fd)
	return fmt.Errorf("seal exe: exec: %w", err)
}

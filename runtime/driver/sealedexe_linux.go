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

// Sealing says how libcontainer will protect the binary (CVE-2019-5736)
// when it starts a container's init from it.
type Sealing string

const (
	// SealingOverlay: at each start libcontainer opens the binary through
	// a private read-only overlayfs (no copy). The process runs from the
	// file on disk, whose pages are shared with the page cache.
	SealingOverlay Sealing = "overlay"
	// SealingMemfd: the process runs from a sealed in-memory copy of its
	// binary, made once; libcontainer uses it as it is.
	SealingMemfd Sealing = "memfd"
)

// PrepareExeSealing makes sure no container start has to copy the binary.
// libcontainer's own preference is a private read-only overlayfs with the
// binary's directory as lower layer, made at each start in the container's
// state directory; when the kernel or the filesystems refuse that (no
// overlayfs, a binary on a filesystem overlayfs cannot use, a state
// directory overlapping the binary's directory), it copies the whole binary
// into a sealed memfd at every start: a copy of the binary per start.
// PrepareExeSealing tries the overlay the same way, with stateDir standing
// in for the state directory, and when it is refused it re-executes the
// process from a sealed copy made once, which libcontainer then uses as it
// is.
//
// Call it at the very start of main, before any goroutine, file or lock
// matters: when it re-executes, the original process does not return (the
// image is replaced, with the same pid, arguments and environment) and the
// re-executed one gets SealingMemfd. On error the process simply continues
// and containers copy the binary at each start.
//
// Why not always seal once: the copy lives in RAM for the life of the
// process and counts in the RSS of every process that runs from it (the
// supervisor; the reaper is C and runs from the file, see runtime/reaper),
// and making it costs a copy of the binary and an exec at boot (figures:
// ARCHITECTURE.md, Performance notes).
func PrepareExeSealing(stateDir string) (Sealing, error) {
	if reexecuted, err := afterReexec(); reexecuted || exeseal.IsSelfExeCloned() {
		if err != nil {
			return "", err
		}
		return SealingMemfd, nil
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return "", fmt.Errorf("seal exe: %w", err)
	}
	// CloneSelfExe is what libcontainer calls at each start: the overlay
	// when it works, else a sealed memfd copy — which is then exactly the
	// copy to re-execute from.
	clone, err := exeseal.CloneSelfExe(stateDir)
	if err != nil {
		return "", fmt.Errorf("seal exe: %w", err)
	}
	defer clone.Close()
	if !exeseal.IsCloned(clone) {
		return SealingOverlay, nil
	}
	return "", reexecFrom(clone)
}

// EnsureSealedExe re-executes the process from a sealed in-memory copy of
// its binary (a memfd with all write seals), unless it already runs from
// one; libcontainer then never copies or overlays the binary at a start.
// Same calling rules as PrepareExeSealing; it returns nil in the
// re-executed process.
func EnsureSealedExe() error {
	if reexecuted, err := afterReexec(); reexecuted || exeseal.IsSelfExeCloned() {
		return err
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
	return reexecFrom(sealed)
}

// afterReexec reports whether this process is the re-executed one, closes
// the descriptor the previous image passed and checks the result.
func afterReexec() (bool, error) {
	fd := os.Getenv(sealedExeEnv)
	if fd == "" {
		return false, nil
	}
	os.Unsetenv(sealedExeEnv)
	if n, err := strconv.Atoi(fd); err == nil && n > 2 {
		unix.Close(n) // the mapping of the executable keeps the memfd alive
	}
	if !exeseal.IsSelfExeCloned() {
		return true, fmt.Errorf("seal exe: re-executed, but /proc/self/exe is not a sealed copy")
	}
	return true, nil
}

// reexecFrom replaces the process image with the sealed copy, passing its
// descriptor in the environment so the new image can close it.
func reexecFrom(sealed *os.File) error {
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

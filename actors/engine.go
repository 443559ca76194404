package actors

import (
	"time"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/state"
)

// Engine is the container mechanism the container actors drive. The actors
// own the when (group order, recovery, shutdown order); the engine owns the
// how (rootfs mounts, libcontainer). Every method may block: actors call them
// from goroutines, never from Receive.
type Engine interface {
	// Mount prepares a container's root filesystem and volumes. The result
	// can start the container any number of times (restarts keep the
	// writable layer, as upstream does within one boot).
	Mount(c *state.Container) (Mount, error)
	// Close releases what the engine keeps for its revision (mounted
	// images); root calls it once the revision is gone: after a shutdown,
	// and for the previous revision after a handover. Mounts it made stay
	// usable (a kept container holds its own image).
	Close() error
}

// Mount is a container's prepared filesystem.
type Mount interface {
	// Start creates the container and runs its init. With a lease, the
	// container gets its own network namespace, plumbed with the lease's
	// address before the init runs; without, it keeps what its config says.
	Start(lease *messages.Lease) (Run, error)
	// Unmount undoes Mount. It must only be called with no run alive.
	Unmount() error
	// Origin is the revision whose volume and log directories the mount
	// uses: its engine's, or, adopted, the one that made it (a container
	// kept by non-reboot updates runs on an older revision's); "" when
	// it uses none.
	Origin() string
}

// Run is one execution of a container's init.
type Run interface {
	Pid() int
	// Wait blocks until the init exits and reports how.
	Wait() messages.Exit
	// Stop sends SIGTERM, waits up to timeout, then SIGKILLs; it returns
	// when the init is gone, or with an error. An init that SIGKILL does
	// not end in time (processes in uninterruptible sleep) is still
	// there: its run's Done, when it has one, is still open, and Wait
	// returns once it ends.
	Stop(timeout time.Duration) error
	// Destroy removes the container (cgroups, state); the init must be gone.
	Destroy() error
}

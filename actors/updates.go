package actors

import (
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// Updates is the device's storage and bootloader as root's update flow
// uses them (package updater implements it). Every write is durable when
// it returns (temp file, fsync, rename). Root calls the writes one at a
// time, in the order crash safety asks for: each is one small file, and
// the order between them is the point. All but Install are called from
// root's Receive; Install, which may write a boot image, from a goroutine
// of its own while root writes nothing else (installRun).
type Updates interface {
	// Load reads and validates rev's state from storage. An error wraps
	// fs.ErrNotExist when rev has no state, and carries the validation
	// problems (state.Problems) when it does not validate.
	Load(rev string) (*state.State, error)
	// Progress reads rev's progress; nil when it has none.
	Progress(rev string) (*storage.Progress, error)
	// WriteProgress replaces rev's progress.
	WriteProgress(rev string, p storage.Progress) error
	// MarkDone writes rev's done flag.
	MarkDone(rev string) error
	// SetCurrent points trails/current at the running revision.
	SetCurrent(rev string) error
	// Install arms rev to be tried (pv_try); reboot says the bootloader
	// can start it only by a reboot.
	//
	// Install, Commit and Fail return an error only when the variables
	// read back do not show the step done: one stored despite an error
	// is done, since the bootloader goes by what is stored. The error
	// wraps bootloader.ErrUnconfirmed when they cannot be read back.
	Install(rev string) (reboot bool, err error)
	// Commit makes rev the committed revision (pv_rev, pv_try cleared).
	Commit(rev string) error
	// Fail clears pv_try: the next boot runs the committed revision.
	Fail() error
	// Env returns the committed revision (pv_rev) and the tried one
	// (pv_try, "" when none).
	Env() (committed, tried string, err error)
}

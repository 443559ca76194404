package bootloader

import (
	"errors"
	"fmt"
)

// Backend is one bootloader's store of the variables and its steps of an
// update. Every write is crash-safe: a crash at any instant leaves the old
// variables or the new ones, never a torn mix (the exceptions, a single
// U-Boot environment on a raw device, say so).
type Backend interface {
	// Load reads the variables.
	Load() (Env, error)
	// Save replaces the stored variables with env. Variables missing from
	// env are gone, for the bootloader too: change what Load returned.
	// Variables the format cannot hold, or that do not fit, are refused
	// before anything is written.
	Save(env Env) error
	// Install arms rev to be tried once at the next boot: the backend's own
	// preparation first (rpiab writes rev's boot image and pv_rev.txt
	// onto its try partition), then pv_try=rev. reboot is true when the backend
	// can only start rev by a reboot (rpiab, when its list of revisions on
	// the try partition is full).
	Install(rev string) (reboot bool, err error)
	// Commit makes rev the revision every later boot runs: pv_rev=rev,
	// pv_try unset, stored; then the backend's own step (rpiab points
	// autoboot.txt at rev's partition). After it there is nothing to roll
	// back to but rev.
	Commit(rev string) error
	// Fail drops the pending update (pv_try unset): the next boot runs the
	// committed revision.
	Fail() error
}

// Runner is a backend that tells which revision this boot runs by what
// its firmware reports, upstream's validate_state (rpiab: the tryboot
// property and the booted partition's pv_rev.txt), where the others leave
// it to a boot script's try-once latch in the variables (Env.Boot). env
// is what Load returned. An error wrapping ErrCommitUnfinished says a
// commit stopped before the backend's own step: Commit(env.Committed())
// finishes it, and the device must then reboot into it.
type Runner interface {
	Running(env Env) (string, error)
}

var _ Runner = RPiAB{}

// InstallChecker is a backend whose install stores more than the
// variables (rpiab's tryboot flag): Installed says whether a reboot now
// tries rev, where the others need only env.IsInstalled(rev).
type InstallChecker interface {
	Installed(env Env, rev string) (bool, error)
}

var _ InstallChecker = RPiAB{}

// CommittedLister is a backend whose boot files say which revision is
// committed, for when its variables do not (rpiab: the revision the
// partition a normal boot loads lists alone). ListedCommitted returns an
// error when they cannot say it.
type CommittedLister interface {
	ListedCommitted() (string, error)
}

var _ CommittedLister = RPiAB{}

// Trybooter is a backend whose try needs a reboot of its own kind: the
// Raspberry Pi firmware boots the try partition only after a reboot with
// "0 tryboot" (rpiab). TakeTryboot consumes what Install armed and says
// whether the coming reboot must be that kind; whoever reboots then owes
// it, or the next boot is a normal one (the try rolled back).
type Trybooter interface {
	TakeTryboot() (bool, error)
}

var _ Trybooter = RPiAB{}

// Bootloader types, the values of PV_BOOTLOADER_TYPE.
const (
	TypeUboot     = "uboot"
	TypeUbootPVK  = "uboot-pvk" // upstream's alias of uboot: the same uboot.txt
	TypeUbootEnv  = "uboot-env"
	TypeGrub      = "grub"
	TypeRPiAB     = "rpiab"
	TypeAppEngine = "appengine"
	TypeUbootAB   = "uboot-ab" // upstream's FIT A/B in MTD: not implemented
)

// ErrUnknownType is returned by New for a type it does not know.
var ErrUnknownType = errors.New("unknown bootloader type")

// Options place the files of each backend; New uses those its type needs.
type Options struct {
	// BootDir is <storage>/boot: uboot.txt, grubenv, rpiab.txt and
	// appengine.txt live there.
	BootDir string
	// FwEnvConfig names the fw_env.config file that places the U-Boot
	// environment (uboot-env); DefaultFwEnvConfig when empty.
	FwEnvConfig string
	// RPiAB places the Raspberry Pi's partitions (rpiab). Its BootDir is
	// Options.BootDir when empty.
	RPiAB RPiAB
	// NoReader says no bootloader reads the files: pantavisor runs as an
	// application, and a bootloader backend is only played. Their writes
	// are then not checkpointed out of the ext4 journal (a whole-journal
	// flush, or a syncfs, of someone's host filesystem at every write).
	NoReader bool
}

// New returns the backend named typ, as PV_BOOTLOADER_TYPE names it. For
// uboot-env it reads the fw_env.config file; it writes nothing.
func New(typ string, o Options) (Backend, error) {
	needDir := func() error {
		if o.BootDir == "" {
			return fmt.Errorf("new %s bootloader: no boot directory", typ)
		}
		return nil
	}
	switch typ {
	case TypeAppEngine:
		if err := needDir(); err != nil {
			return nil, err
		}
		return AppEngine{Dir: o.BootDir}, nil
	case TypeUboot, TypeUbootPVK:
		if err := needDir(); err != nil {
			return nil, err
		}
		return Uboot{Dir: o.BootDir, NoReader: o.NoReader}, nil
	case TypeGrub:
		if err := needDir(); err != nil {
			return nil, err
		}
		return Grub{Dir: o.BootDir, NoReader: o.NoReader}, nil
	case TypeRPiAB:
		r := o.RPiAB
		if r.BootDir == "" {
			r.BootDir = o.BootDir
		}
		if err := r.checkDevice(); err != nil {
			return nil, fmt.Errorf("new %s bootloader: %w", typ, err)
		}
		return r, nil
	case TypeUbootEnv:
		path := o.FwEnvConfig
		if path == "" {
			path = DefaultFwEnvConfig
		}
		u, err := LoadFwEnvConfig(path)
		if err != nil {
			return nil, fmt.Errorf("new %s bootloader: %w", typ, err)
		}
		u.NoReader = o.NoReader
		return u, nil
	case TypeUbootAB:
		return nil, fmt.Errorf("new bootloader: %w %q: upstream's FIT A/B in MTD partitions is not implemented", ErrUnknownType, typ)
	}
	return nil, fmt.Errorf("new bootloader: %w %q (want one of %s, %s, %s, %s, %s, %s)", ErrUnknownType, typ,
		TypeUboot, TypeUbootPVK, TypeUbootEnv, TypeGrub, TypeRPiAB, TypeAppEngine)
}

// store is the part of a backend that holds the variables.
type store interface {
	Load() (Env, error)
	Save(Env) error
}

// The steps of an update for backends that have nothing to do but change
// their variables.

func install(s store, rev string) (bool, error) {
	if err := checkRev(rev); err != nil {
		return false, fmt.Errorf("install revision: %w", err)
	}
	return false, change(s, "install revision "+rev, func(e Env) Env { return e.installed(rev) })
}

func commit(s store, rev string) error {
	if err := checkRev(rev); err != nil {
		return fmt.Errorf("commit revision: %w", err)
	}
	return change(s, "commit revision "+rev, func(e Env) Env { return e.committed(rev) })
}

func fail(s store) error {
	return change(s, "fail update", Env.failed)
}

// change loads the variables, applies f and saves the result: the other
// variables (U-Boot's own, in a U-Boot environment) are kept as they were.
func change(s store, what string, f func(Env) Env) error {
	env, err := s.Load()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := s.Save(f(env)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// ErrUnconfirmed is wrapped by Confirm's error when the variables cannot
// be read back: whether the step reached the medium is unknown, so the
// next boot may act on the variables as they were or as the step left
// them.
var ErrUnconfirmed = errors.New("outcome unknown: the variables cannot be read back")

// Confirm judges an update step (Install, Commit, Fail) of b that returned
// err by what b stores now: an error may come after the variables reached
// the medium (the fsync of the directory after the rename, the close), and
// the bootloader acts on what is stored, not on the error. It returns nil
// when the variables read back show the step done (done holds): the
// caller goes on as after a success, once they were saved again without
// an error (read back, they may be the page cache's only). It returns err
// when they show it not done, and err with ErrUnconfirmed when they
// cannot be read or saved again. Variables
// found corrupt or with no valid copy are read as none: the next boot
// runs the factory revision on them (updater.Device.Start), as the
// bootloader does with no variables.
func Confirm(b Backend, err error, done func(Env) bool) error {
	if err == nil {
		return nil
	}
	env, lerr := b.Load()
	none := errors.Is(lerr, ErrCorrupt) || errors.Is(lerr, ErrNoValidCopy)
	if none {
		env, lerr = Env{}, nil
	}
	switch {
	case lerr != nil:
		return fmt.Errorf("%w (%w: %w)", err, ErrUnconfirmed, lerr)
	case !done(env):
		return err
	case none:
		// Nothing to store again: the next boot reads none as well, and
		// a save would replace U-Boot's built-in variables.
		return nil
	}
	// What was read may be the page cache's and not the medium's (the
	// error was the fsync of the directory after the rename): a power cut
	// could still bring the old variables back. Only a save of them that
	// succeeds makes them known to be stored.
	if serr := b.Save(env); serr != nil {
		return fmt.Errorf("%w (%w: the variables read back show it done, but storing them again failed: %w)", err, ErrUnconfirmed, serr)
	}
	return nil
}

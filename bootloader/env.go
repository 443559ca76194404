// Package bootloader reads and writes the variables that select the revision
// to boot, each backend where its bootloader reads them, and carries out the
// bootloader's part of an update: install (arm a revision to be tried once),
// commit (make it the one to boot) and fail (drop it).
//
// The variables, as upstream Pantavisor names them:
//
//	pv_rev     the committed revision ("pv_done" in upstream's code); absent: "0", the factory revision
//	pv_try     the revision to try at the next boot; absent or empty: no update
//	pv_trying  the boot script's latch: set when it boots pv_try, so that the
//	           boot after a failed try (crash, watchdog) boots pv_rev instead
//
// Backends, selected by PV_BOOTLOADER_TYPE (New):
//
//	uboot, uboot-pvk  <storage>/boot/uboot.txt, upstream's NUL-separated 1 KiB file
//	uboot-env         a U-Boot environment image (CRC32, single or redundant), as fw_printenv reads it
//	grub              <storage>/boot/grubenv, GRUB's 1024-byte environment block
//	rpiab             <storage>/boot/rpiab.txt plus autoboot.txt, pv_rev.txt and the tryboot flag of a Raspberry Pi
//	appengine         <storage>/boot/appengine.txt, for pantavisor run as an application
package bootloader

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"

	"github.com/pantavisor/pv/storage"
)

// The variables every backend keeps.
const (
	VarRev    = "pv_rev"
	VarTry    = "pv_try"
	VarTrying = "pv_trying"
)

// FactoryRev is the revision a device boots when nothing was ever committed.
const FactoryRev = "0"

// ErrTooBig is returned when the variables do not fit the backend's fixed
// size; nothing was written.
var ErrTooBig = errors.New("environment does not fit")

// ErrCorrupt is returned by Load when the file a backend keeps its
// variables in was read but is not in the backend's format (torn, zeroed,
// overwritten): no revision can be read from it. Nothing can be saved
// from such a file, so a start boots the factory revision (the one an
// environment without pv_rev names) and writes the variables anew
// (updater.Device.Start) rather than not start at all. A read that failed
// (EIO) is not ErrCorrupt: the variables may be fine.
var ErrCorrupt = errors.New("variables not in the backend's format")

// Env is a set of bootloader variables.
type Env map[string]string

// Revision returns the revision to boot now, ignoring the pv_trying latch:
// pv_try when an update is being tried, else pv_rev, else the factory
// revision "0".
func (e Env) Revision() string {
	if t := e[VarTry]; t != "" {
		return t
	}
	return e.Committed()
}

// Committed returns the committed revision (upstream's pv_done): pv_rev, or
// the factory revision "0" when none was ever committed.
func (e Env) Committed() string {
	if r := e[VarRev]; r != "" {
		return r
	}
	return FactoryRev
}

// Try returns the revision armed to be tried, "" when there is no update.
func (e Env) Try() string { return e[VarTry] }

// Boot is what a try-once boot script (meta-pantavisor's U-Boot script) does
// at power-on: with no pv_try it boots the committed revision; with pv_try
// not yet attempted it sets pv_trying=pv_try and boots pv_try; with pv_try
// already attempted (pv_trying == pv_try: the try crashed or hung before a
// commit) it clears the latch and boots the committed revision, leaving
// pv_try set so that pantavisor sees the rollback. It returns the revision
// to boot and the variables to store; the caller must store them durably
// before starting the revision, or a crash during the try would retry it
// forever.
func (e Env) Boot() (rev string, next Env) {
	next = e.clone()
	try := e[VarTry]
	switch {
	case try == "":
		return e.Committed(), next
	case e[VarTrying] == try:
		delete(next, VarTrying)
		return e.Committed(), next
	default:
		next[VarTrying] = try
		return try, next
	}
}

// installed returns e with rev armed to be tried at the next boot. A latch
// left by an earlier attempt is dropped: if it named the same revision (a
// retry after a failure), the boot script would take the new attempt for a
// failed one and never boot it.
func (e Env) installed(rev string) Env {
	n := e.clone()
	n[VarTry] = rev
	delete(n, VarTrying)
	return n
}

// committed returns e with rev as the committed revision and no update
// pending.
func (e Env) committed(rev string) Env {
	n := e.clone()
	n[VarRev] = rev
	delete(n, VarTry)
	delete(n, VarTrying)
	return n
}

// failed returns e with the pending update dropped: the next boot runs the
// committed revision.
func (e Env) failed() Env {
	n := e.clone()
	delete(n, VarTry)
	delete(n, VarTrying)
	return n
}

// IsInstalled reports whether e tries rev at the next boot: pv_try=rev
// with no latch naming it, which the boot script would take for a try of
// rev that already failed.
func (e Env) IsInstalled(rev string) bool { return e.Try() == rev && e[VarTrying] != rev }

// IsCommitted reports whether every boot runs rev now: pv_rev=rev and no
// update pending.
func (e Env) IsCommitted(rev string) bool { return e.Committed() == rev && e.Try() == "" }

// IsFailed reports whether e holds no pending update.
func (e Env) IsFailed() bool { return e.Try() == "" }

func (e Env) clone() Env {
	n := make(Env, len(e))
	for k, v := range e {
		n[k] = v
	}
	return n
}

// keys returns the variable names sorted, so that every write of the same
// variables produces the same bytes (as fw_setenv and grub-editenv do).
func (e Env) keys() []string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkVar refuses a variable no backend can store unambiguously: an empty
// name, or a name holding '=', NUL or a newline; and a value holding any of
// badValue, which each format sets.
func checkVar(k, v, badValue string) error {
	if k == "" {
		return fmt.Errorf("variable with an empty name")
	}
	if i := strings.IndexAny(k, "=\x00\n"); i >= 0 {
		return fmt.Errorf("variable name %q holds %q", k, k[i])
	}
	if i := strings.IndexAny(v, badValue); badValue != "" && i >= 0 {
		return fmt.Errorf("variable %s: value %q holds %q", k, v, v[i])
	}
	return nil
}

// checkRev refuses a revision name that could not travel through every
// backend and the kernel command line (pv_rev=<rev>): besides what storage
// refuses, white space, control characters and ',' (the separator of
// rpiab's pv_rev.txt).
func checkRev(rev string) error {
	if err := storage.CheckRev(rev); err != nil {
		return err
	}
	for _, r := range rev {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == ',' {
			return fmt.Errorf("bad revision name %q: holds %q", rev, r)
		}
	}
	return nil
}

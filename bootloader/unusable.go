package bootloader

import (
	"errors"
	"fmt"
)

// ErrUnusable is wrapped by every error of Unusable: the bootloader could
// not be set up, and nothing was read or written.
var ErrUnusable = errors.New("bootloader unusable")

// Unusable stands for a bootloader that cannot be set up (New's error, or
// rpiab's partitions that cannot be placed): every step fails with
// ErrUnusable and Err, the reason, and touches nothing. The boot decision
// enters safe mode on it (the control socket up to tell why, no
// containers) instead of a reboot loop.
type Unusable struct{ Err error }

var _ Backend = Unusable{}

func (u Unusable) Load() (Env, error)           { return nil, u.fail() }
func (u Unusable) Save(Env) error               { return u.fail() }
func (u Unusable) Install(string) (bool, error) { return false, u.fail() }
func (u Unusable) Commit(string) error          { return u.fail() }
func (u Unusable) Fail() error                  { return u.fail() }

func (u Unusable) fail() error { return fmt.Errorf("%w: %w", ErrUnusable, u.Err) }

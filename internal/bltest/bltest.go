// Package bltest wraps a bootloader backend for tests of what follows an
// update step (Install, Commit, Fail) that returned an error: the real
// backend's files are written, and the error is one the medium can give
// after they reached it (the fsync of the directory after the rename, the
// close), or before anything was written.
package bltest

import (
	"errors"
	"sync/atomic"

	"github.com/pantavisor/pv/bootloader"
)

// ErrStep is the error Faulty's steps return.
var ErrStep = errors.New("bltest: input/output error after the write")

// ErrUnreadable is what Faulty's Load returns once a step failed, with
// Unreadable.
var ErrUnreadable = errors.New("bltest: variables unreadable")

// Faulty is Backend whose steps named in Fail* return ErrStep.
type Faulty struct {
	bootloader.Backend
	// FailInstall, FailCommit and FailFail select the steps that return
	// ErrStep.
	FailInstall, FailCommit, FailFail bool
	// Skip: a failing step writes nothing (the error came first).
	// Otherwise it runs on Backend and its result is stored.
	Skip bool
	// Unreadable: once a step failed, Load and every step return
	// ErrUnreadable (steps load the variables first).
	Unreadable bool
	// FailSave: Save writes, then returns ErrStep, as a directory whose
	// fsync keeps failing makes every write (nothing is known durable).
	FailSave bool
	failed   atomic.Bool
}

// Failed reports whether a step returned ErrStep.
func (f *Faulty) Failed() bool { return f.failed.Load() }

// Load reads the variables, unless Unreadable and a step failed.
func (f *Faulty) Load() (bootloader.Env, error) {
	if f.unreadable() {
		return nil, ErrUnreadable
	}
	return f.Backend.Load()
}

func (f *Faulty) unreadable() bool { return f.Unreadable && f.failed.Load() }

// Save stores env on Backend; ErrStep after it with FailSave.
func (f *Faulty) Save(env bootloader.Env) error {
	if f.unreadable() {
		return ErrUnreadable
	}
	if err := f.Backend.Save(env); err != nil || !f.FailSave {
		return err
	}
	return ErrStep
}

// Install arms rev on Backend; ErrStep with FailInstall.
func (f *Faulty) Install(rev string) (bool, error) {
	if f.unreadable() {
		return false, ErrUnreadable
	}
	if !f.FailInstall {
		return f.Backend.Install(rev)
	}
	return false, f.fail(func() error { _, err := f.Backend.Install(rev); return err })
}

// Commit commits rev on Backend; ErrStep with FailCommit.
func (f *Faulty) Commit(rev string) error {
	if f.unreadable() {
		return ErrUnreadable
	}
	if !f.FailCommit {
		return f.Backend.Commit(rev)
	}
	return f.fail(func() error { return f.Backend.Commit(rev) })
}

// Fail drops the try on Backend; ErrStep with FailFail.
func (f *Faulty) Fail() error {
	if f.unreadable() {
		return ErrUnreadable
	}
	if !f.FailFail {
		return f.Backend.Fail()
	}
	return f.fail(f.Backend.Fail)
}

// fail runs step unless Skip, then returns ErrStep (or step's own error).
func (f *Faulty) fail(step func() error) error {
	if !f.Skip {
		if err := step(); err != nil {
			return err
		}
	}
	f.failed.Store(true)
	return ErrStep
}

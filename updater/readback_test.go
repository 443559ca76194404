package updater

import (
	"errors"
	"testing"

	"github.com/pantavisor/pv/bootloader"
	"github.com/pantavisor/pv/internal/bltest"
	"github.com/pantavisor/pv/storage"
)

// faulty puts f in front of d's bootloader.
func faulty(d *Device, f *bltest.Faulty) *Device {
	f.Backend = d.Bootloader
	d.Bootloader = f
	return d
}

// A step that returned an error is judged by the variables read back:
// stored is done, not stored is the error, unreadable is the error with
// ErrUnconfirmed.
func TestStepErrorsAreJudgedByTheStoredVariables(t *testing.T) {
	tried := bootloader.Env{bootloader.VarRev: "0", bootloader.VarTry: "1"}
	committed := bootloader.Env{bootloader.VarRev: "0"}
	steps := []struct {
		name string
		env  bootloader.Env
		arm  func(*bltest.Faulty) // selects the failing step
		run  func(*Device) error
		done func(bootloader.Env) bool
	}{
		{"install", committed, func(f *bltest.Faulty) { f.FailInstall = true }, func(d *Device) error {
			reboot, err := d.Install("1")
			if err == nil && !reboot {
				return errors.New("an install stored despite its error goes on without a reboot")
			}
			return err
		}, func(e bootloader.Env) bool { return e.IsInstalled("1") }},
		{"commit", tried, func(f *bltest.Faulty) { f.FailCommit = true }, func(d *Device) error { return d.Commit("1") },
			func(e bootloader.Env) bool { return e.IsCommitted("1") }},
		{"fail", tried, func(f *bltest.Faulty) { f.FailFail = true }, func(d *Device) error { return d.Fail() }, bootloader.Env.IsFailed},
	}
	for _, s := range steps {
		t.Run(s.name+"/stored", func(t *testing.T) {
			f := &bltest.Faulty{}
			s.arm(f)
			d := faulty(device(t, s.env), f)
			if err := s.run(d); err != nil {
				t.Errorf("%s stored despite an error: %v, want it done", s.name, err)
			}
			if !f.Failed() || !s.done(d.mustEnv(t)) {
				t.Errorf("failed %v, variables %v", f.Failed(), d.mustEnv(t))
			}
		})
		t.Run(s.name+"/not stored", func(t *testing.T) {
			f := &bltest.Faulty{Skip: true}
			s.arm(f)
			d := faulty(device(t, s.env), f)
			err := s.run(d)
			if !errors.Is(err, bltest.ErrStep) || errors.Is(err, bootloader.ErrUnconfirmed) {
				t.Errorf("%s not stored: %v, want its error, confirmed", s.name, err)
			}
		})
		t.Run(s.name+"/stored, not known durable", func(t *testing.T) {
			// The variables read back show the step, but every write
			// fails (a directory whose fsync fails): they may be the
			// page cache's, not the medium's.
			f := &bltest.Faulty{FailSave: true}
			s.arm(f)
			d := faulty(device(t, s.env), f)
			err := s.run(d)
			if !errors.Is(err, bltest.ErrStep) || !errors.Is(err, bootloader.ErrUnconfirmed) {
				t.Errorf("%s stored, not durable: %v, want its error and ErrUnconfirmed", s.name, err)
			}
		})
		t.Run(s.name+"/unreadable", func(t *testing.T) {
			f := &bltest.Faulty{Unreadable: true}
			s.arm(f)
			d := faulty(device(t, s.env), f)
			err := s.run(d)
			if !errors.Is(err, bltest.ErrStep) || !errors.Is(err, bootloader.ErrUnconfirmed) {
				t.Errorf("%s unreadable: %v, want its error and ErrUnconfirmed", s.name, err)
			}
		})
	}
}

// A latch naming the revision left beside pv_try is no install: the boot
// script would take the try for one that already failed.
func TestInstallUnderALatchOfTheSameRevisionIsNotStored(t *testing.T) {
	env := bootloader.Env{bootloader.VarRev: "0", bootloader.VarTry: "1", bootloader.VarTrying: "1"}
	d := faulty(device(t, env), &bltest.Faulty{FailInstall: true, Skip: true})
	if _, err := d.Install("1"); !errors.Is(err, bltest.ErrStep) {
		t.Errorf("install: %v, want its error", err)
	}
}

// The boot that clears the pv_try of a try the bootloader fell back from
// goes on when the clearing is stored despite an error. Before, Start
// failed on it: safe mode, with nothing wrong in the variables.
func TestStartGoesOnWhenClearingATryIsStoredDespiteAnError(t *testing.T) {
	d := device(t, bootloader.Env{bootloader.VarRev: "0", bootloader.VarTry: "1", bootloader.VarTrying: "1"})
	if err := d.WriteProgress("1", storage.NewProgress(storage.StatusError, storage.MsgContainerFailed)); err != nil {
		t.Fatal(err)
	}
	f := &bltest.Faulty{FailFail: true}
	faulty(d, f)
	b, err := d.Start()
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if !f.Failed() || b.Rev != "0" || b.Trying || d.mustEnv(t).Try() != "" {
		t.Errorf("boot %s (trying %v), clear failed %v, variables %v: want 0 run, pv_try cleared", b.Rev, b.Trying, f.Failed(), d.mustEnv(t))
	}
}

package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/runc/libcontainer/configs"

	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/network/link"
	"github.com/pantavisor/pv/runtime/driver"
	"github.com/pantavisor/pv/state"
)

// leaseKey is the label under which a container's lease is kept with its
// libcontainer state, for a supervisor that re-adopts it.
const leaseKey = "pv.lease"

func leaseLabel(l *messages.Lease) ([]string, error) {
	if l == nil {
		return nil, nil
	}
	b, err := json.Marshal(l)
	if err != nil {
		return nil, fmt.Errorf("keep lease: %w", err)
	}
	return []string{leaseKey + "=" + string(b)}, nil
}

// Adopted is what a previous supervisor of the device left of one
// container: its mounts and, when it was created, its container (whose
// init may have ended in the gap: Run.Wait then returns how) and lease.
type Adopted struct {
	Mount *Mount
	Run   *Run
	Lease *messages.Lease
}

// Adopt takes over container c as a previous supervisor, now dead, left
// it (reaper.Generation > 0): its mounts (the shared lowers recovered
// first, RecoverLowers), its libcontainer container, watched through a
// pidfd with its exit status from exits, and its eth0. Nothing is
// restarted or remounted. It returns nil and no error when nothing of c
// is left to adopt (the caller starts it as at boot); what is left but
// cannot be adopted is torn down, and the error says why.
func (e *Engine) Adopt(c *state.Container, exits driver.ExitSource) (*Adopted, error) {
	work := filepath.Join(e.WorkDir, c.Name)
	if _, err := os.Stat(filepath.Join(work, "rootfs")); errors.Is(err, os.ErrNotExist) {
		return nil, e.destroyLeftover(c.Name, exits)
	}
	m, err := e.mount(c, true)
	if err != nil {
		// Mount undid what it had found; the container, if any, goes.
		return nil, errors.Join(fmt.Errorf("adopt %s: %w", c.Name, err), e.destroyLeftover(c.Name, exits))
	}
	if _, err := os.Stat(filepath.Join(e.Driver.StateRoot(), c.Name)); errors.Is(err, os.ErrNotExist) {
		return &Adopted{Mount: m}, nil // mounted, never created (goal MOUNTED, or the gap came first)
	}
	ct, err := e.Driver.Adopt(c.Name, exits)
	if err != nil {
		err = fmt.Errorf("adopt %s: %w", c.Name, err)
		if ct != nil {
			err = errors.Join(err, destroyDead(ct))
		}
		return &Adopted{Mount: m}, err
	}
	a := &Adopted{Mount: m, Run: &Run{ct: ct, log: e.Log}}
	if v, ok := ct.Label(leaseKey); ok {
		var l messages.Lease
		if err := json.Unmarshal([]byte(v), &l); err != nil {
			return a, fmt.Errorf("adopt %s: lease label: %w", c.Name, err)
		}
		a.Lease = &l
		if att, err := adoptLink(ct, &l); err != nil {
			// An init that ended in the gap took its netns and veth
			// with it: nothing to adopt, nothing to report.
			select {
			case <-ct.Done():
			default:
				e.Log.Warn("container network not re-adopted: its eth0 stays until the container stops", "container", c.Name, "err", err)
			}
		} else {
			a.Run.link = &att
		}
	}
	return a, nil
}

func adoptLink(ct *driver.Container, l *messages.Lease) (link.Attachment, error) {
	var ns string
	if ct.Config().Namespaces.Contains(configs.NEWNET) {
		p, err := ct.NetnsPath()
		if err != nil {
			return link.Attachment{}, err
		}
		ns = p
	}
	mac, _ := net.ParseMAC(l.MAC)
	return link.Adopt(link.KindOf(l.Type), ct.Name(), l.Link, ns, l.Addr, mac)
}

// destroyLeftover removes a libcontainer container left under name that
// cannot be taken over: killed if it runs, then destroyed.
func (e *Engine) destroyLeftover(name string, exits driver.ExitSource) error {
	if _, err := os.Stat(filepath.Join(e.Driver.StateRoot(), name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	ct, err := e.Driver.Adopt(name, exits)
	if ct == nil {
		return fmt.Errorf("remove leftover container %s: %w", name, err)
	}
	return destroyDead(ct)
}

// destroyDead kills what is left of an adopted container and removes it.
func destroyDead(ct *driver.Container) error {
	if _, err := ct.Stop(time.Second); err != nil && !errors.Is(err, driver.ErrNotRunning) {
		return errors.Join(err, ct.Destroy())
	}
	return ct.Destroy()
}

// RecoverLowers takes the shared image mounts a previous supervisor left
// into the engine's cache (rootfs.Lowers.Recover), before any Adopt.
func (e *Engine) RecoverLowers() (int, error) { return e.lowers().Recover() }

// PruneLowers unmounts the recovered image mounts no adopted container
// took, after every Adopt.
func (e *Engine) PruneLowers() error { return e.lowers().Prune() }

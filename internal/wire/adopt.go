package wire

import (
	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/runtime/driver"
	"github.com/pantavisor/pv/runtime/engine"
	"github.com/pantavisor/pv/state"
)

// Adopter adapts e and p to actors.Adopter: what a previous supervisor of
// the device left, with the exit statuses of its ended inits from exits
// (PID 1's, runtime/reaper).
func Adopter(e *engine.Engine, p *engine.Pools, exits driver.ExitSource) actors.Adopter {
	return adopter{e: e, p: p, exits: exits}
}

type adopter struct {
	e     *engine.Engine
	p     *engine.Pools
	exits driver.ExitSource
}

func (a adopter) AdoptPool(pool state.Pool, peers []string) (actors.PoolSetup, error) {
	if a.p == nil {
		return nil, nil
	}
	s, err := a.p.Adopt(pool, peers)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (a adopter) AdoptContainer(c *state.Container) (actors.Mount, actors.Run, *messages.Lease, error) {
	ad, err := a.e.Adopt(c, a.exits)
	if ad == nil || ad.Mount == nil {
		return nil, nil, nil, err
	}
	if ad.Run == nil {
		return mountAdapter{ad.Mount}, nil, nil, err
	}
	return mountAdapter{ad.Mount}, ad.Run, ad.Lease, err
}

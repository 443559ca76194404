package main

import (
	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/runtime/engine"
	"github.com/pantavisor/pv/state"
)

// engineAdapter presents the runtime engine to the actors: the engine
// returns its concrete types, the actors want their interfaces, and neither
// package imports the other.
type engineAdapter struct{ e *engine.Engine }

func (a engineAdapter) Mount(c *state.Container) (actors.Mount, error) {
	m, err := a.e.Mount(c)
	if err != nil {
		return nil, err
	}
	return mountAdapter{m}, nil
}

type mountAdapter struct{ *engine.Mount }

func (m mountAdapter) Start(lease *messages.Lease) (actors.Run, error) {
	r, err := m.Mount.Start(lease)
	if err != nil {
		return nil, err
	}
	return r, nil
}

var _ actors.Engine = engineAdapter{}
var _ actors.Run = (*engine.Run)(nil)

// poolsAdapter presents the engine's pool setup to the actors.
type poolsAdapter struct{ p *engine.Pools }

func (a poolsAdapter) Setup(p state.Pool, peers []string) (actors.PoolSetup, error) {
	s, err := a.p.Setup(p, peers)
	if err != nil {
		return nil, err
	}
	return s, nil
}

var _ actors.PoolNet = poolsAdapter{}

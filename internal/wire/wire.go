// Package wire presents the runtime engine to the actors: the engine returns
// its concrete types, the actors want their interfaces, and neither package
// imports the other. The binary, the in-process integration tests and the
// benchmarks all wire the same way.
package wire

import (
	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/messages"
	"github.com/pantavisor/pv/runtime/engine"
	"github.com/pantavisor/pv/state"
)

// Engine adapts e to actors.Engine.
func Engine(e *engine.Engine) actors.Engine { return engineAdapter{e} }

// Pools adapts p to actors.PoolNet.
func Pools(p *engine.Pools) actors.PoolNet { return poolsAdapter{p} }

type engineAdapter struct{ e *engine.Engine }

func (a engineAdapter) Mount(c *state.Container) (actors.Mount, error) {
	m, err := a.e.Mount(c)
	if err != nil {
		return nil, err
	}
	return mountAdapter{m}, nil
}

// Close releases the images the engine keeps mounted (engine.Engine.Close);
// root calls it once the engine's revision is gone.
func (a engineAdapter) Close() error { return a.e.Close() }

type mountAdapter struct{ *engine.Mount }

func (m mountAdapter) Start(lease *messages.Lease) (actors.Run, error) {
	r, err := m.Mount.Start(lease)
	if err != nil {
		return nil, err
	}
	return r, nil
}

type poolsAdapter struct{ p *engine.Pools }

func (a poolsAdapter) Setup(p state.Pool, peers []string) (actors.PoolSetup, error) {
	s, err := a.p.Setup(p, peers)
	if err != nil {
		return nil, err
	}
	return s, nil
}

var (
	_ actors.Engine  = engineAdapter{}
	_ actors.PoolNet = poolsAdapter{}
	_ actors.Run     = (*engine.Run)(nil)
)

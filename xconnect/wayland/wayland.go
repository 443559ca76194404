// Package wayland is the xconnect plugin for a Wayland compositor's
// socket: a unix link, whose descriptor passing is what Wayland needs (a
// client hands its buffers' memory and dma-bufs to the compositor as file
// descriptors; upstream's byte proxy drops them and such clients break).
package wayland

import (
	"github.com/pantavisor/pv/xconnect"
	"github.com/pantavisor/pv/xconnect/unix"
)

// New makes the proxy of cfg.Link.
func New(cfg xconnect.Config) xconnect.Proxy { return unix.New(cfg) }

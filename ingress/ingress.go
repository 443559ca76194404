// Package ingress opens the device's ingress listeners (device.json
// ingress[]): the actors.IngressPlane of a device. A tcp listener relays
// each connection to its rule's backend (xconnect/tcp); an http listener
// routes requests by longest path prefix among its rules
// (xconnect/http). A backend is the provider's export: its unix socket
// inside the provider, or its port at the provider's IPAM address (or on
// the device's loopback for a provider in the host's network namespace),
// followed as the provider restarts (mesh.Backend).
package ingress

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/pantavisor/pv/actors"
	"github.com/pantavisor/pv/xconnect"
	xhttp "github.com/pantavisor/pv/xconnect/http"
	"github.com/pantavisor/pv/xconnect/mesh"
	"github.com/pantavisor/pv/xconnect/tcp"
)

// Plane opens listeners in pantavisor's own network namespace (the
// device's).
type Plane struct {
	Log *slog.Logger
	// TCP and HTTP tune the proxies; zero values take their defaults.
	TCP  tcp.Options
	HTTP xhttp.Options
}

// Listen binds l.Addr and serves its rules.
func (p *Plane) Listen(l actors.IngressListener, stats []*xconnect.Stats) (actors.IngressSetup, error) {
	log := p.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("ingress", l.Addr)
	bes := make([]*mesh.Backend, len(l.Rules))
	for i, r := range l.Rules {
		bes[i] = mesh.NewBackend(xconnect.Link{Consumer: "EXTERNAL", Provider: r.Provider, Name: r.Service, Type: r.Type,
			Socket: r.Socket, Port: r.Port}, xconnect.Ends{})
	}
	ln, err := xconnect.ListenTCP(0, l.Addr)
	if err != nil {
		return nil, err
	}
	s := &setup{l: l, ln: ln, bes: bes, done: make(chan struct{})}
	switch l.Type {
	case "tcp":
		if len(l.Rules) != 1 {
			ln.Close()
			return nil, fmt.Errorf("tcp listener %s has %d rules, want one", l.Addr, len(l.Rules))
		}
		s.px = tcp.NewWith(xconnect.Config{Dial: bes[0].Dial, Stats: stats[0], Log: log}, p.TCP)
	case "http":
		opt := p.HTTP
		opt.Log = log
		srv := xhttp.NewServer(opt)
		routes := make([]xhttp.Route, len(l.Rules))
		for i, r := range l.Rules {
			routes[i] = xhttp.Route{Prefix: r.Prefix, Dial: bes[i].Dial, Stats: stats[i]}
		}
		srv.Set(routes)
		s.px = srv
	default:
		ln.Close()
		return nil, fmt.Errorf("listener %s: unknown ingress type %q", l.Addr, l.Type)
	}
	go func() {
		defer close(s.done)
		defer func() {
			if r := recover(); r != nil {
				log.Error("ingress listener panicked", "panic", fmt.Sprint(r))
			}
		}()
		if err := s.px.Serve(ln); err != nil {
			log.Error("ingress listener stopped", "err", err)
		}
	}()
	return s, nil
}

type setup struct {
	l    actors.IngressListener
	ln   net.Listener
	bes  []*mesh.Backend
	px   xconnect.Proxy
	done chan struct{}
}

func (s *setup) Backend(i int, e xconnect.Ends) {
	if i >= 0 && i < len(s.bes) {
		s.bes[i].Set(e)
	}
}

func (s *setup) Close() error {
	err := s.px.Close()
	if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = errors.Join(err, cerr)
	}
	<-s.done
	return err
}

func (s *setup) Describe() string {
	routes := make([]string, len(s.l.Rules))
	for i, r := range s.l.Rules {
		to := r.Socket
		if to == "" {
			to = fmt.Sprintf(":%d", r.Port)
		}
		routes[i] = r.Prefix + "→" + r.Provider + to
	}
	return s.l.Type + " " + s.ln.Addr().String() + " " + strings.Join(routes, ", ")
}

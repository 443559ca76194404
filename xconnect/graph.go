package xconnect

import (
	"github.com/pantavisor/pv/state"
)

// DefaultRole is the role of a requirement that names none, as upstream.
const DefaultRole = "any"

// Link is one (consumer, service) edge of the graph: what the consumer
// asked for and which export of which provider answers it.
type Link struct {
	Consumer string
	Provider string
	// Name is the service name, Type the link type (the requirement's
	// type, or the export's when the requirement names none).
	Name string
	Type string
	// Role is who the consumer is to the provider (DefaultRole when the
	// requirement names none); dbus maps it to a uid.
	Role      string
	Interface string
	// Target is where the consumer end appears inside the consumer:
	// a path (unix, rest, dbus, wayland, drm) or IP:PORT[/prefix] (tcp,
	// http). See ConsumerEnd.
	Target string
	// Socket is the export's unix socket path inside the provider, empty
	// for a tcp export by port.
	Socket string
	// Port is the export's port (tcp, http exports reached by address).
	Port     int
	Required bool
}

// Key names the link uniquely within a revision: one link per consumer and
// service.
func (l Link) Key() string { return l.Consumer + "/" + l.Name }

// ConsumerEnd is where the link's socket is created inside the consumer:
// the target, else the interface, else /tmp/pvx_<consumer>_<name>.sock,
// as upstream does.
func (l Link) ConsumerEnd() string {
	return state.LinkEnd(l.Consumer, l.Name, l.Target, l.Interface)
}

// Graph lists the links of a state: for each container, each of its
// required and optional services, the first container (in state order)
// that exports a service of that name and a matching type — the named
// provider only, when the requirement names one. A requirement nothing
// answers has no link: validation refused the state already when it was
// required. A consumer has one link per service name: a second requirement
// of the same name (optional after required, in that order) is left out.
func Graph(st *state.State) []Link {
	var out []Link
	seen := map[string]bool{}
	for _, c := range st.Containers {
		for _, set := range []struct {
			list     []state.ServiceRequirement
			required bool
		}{{c.Requires, true}, {c.Optional, false}} {
			for _, r := range set.list {
				if l, ok := resolve(st, c, r); ok && !seen[l.Key()] {
					seen[l.Key()] = true
					l.Required = set.required
					out = append(out, l)
				}
			}
		}
	}
	return out
}

func resolve(st *state.State, c *state.Container, r state.ServiceRequirement) (Link, bool) {
	if r.Name == "" {
		return Link{}, false
	}
	for _, p := range st.Containers {
		if r.Provider != "" && p.Name != r.Provider {
			continue
		}
		for _, e := range p.Exports {
			if e.Name != r.Name || (r.Type != "" && e.Type != "" && e.Type != r.Type) {
				continue
			}
			l := Link{Consumer: c.Name, Provider: p.Name, Name: r.Name, Type: r.Type, Role: r.Role,
				Interface: r.Interface, Target: r.Target, Socket: e.Socket, Port: e.Port}
			if l.Type == "" {
				l.Type = e.Type
			}
			if l.Role == "" {
				l.Role = DefaultRole
			}
			return l, true
		}
	}
	return Link{}, false
}

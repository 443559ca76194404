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
	return graphBy(st, indexExports(st).resolve)
}

// graphBy is Graph with the requirement of a consumer resolved by
// resolve (the index; its test's reference, a scan).
func graphBy(st *state.State, resolve func(*state.Container, state.ServiceRequirement) (Link, bool)) []Link {
	var out []Link
	seen := map[string]bool{}
	for _, c := range st.Containers {
		for _, set := range []struct {
			list     []state.ServiceRequirement
			required bool
		}{{c.Requires, true}, {c.Optional, false}} {
			for _, r := range set.list {
				if l, ok := resolve(c, r); ok && !seen[l.Key()] {
					seen[l.Key()] = true
					l.Required = set.required
					out = append(out, l)
				}
			}
		}
	}
	return out
}

// export is one export of the state, with its place in state order.
type export struct {
	order    int
	provider *state.Container
	e        *state.ServiceExport
}

// exportIndex finds the first export (in state order) of a name that
// answers a requirement without a scan of every export per requirement,
// which made Graph, run as a revision starts, quadratic in its size.
type exportIndex struct {
	// byName: per service name, the first export of each type ("" for
	// an export of no known type, which answers any requirement), and
	// the first of all.
	byName map[string]*firstExports
	// byProvider: per provider and service name, its exports, in order.
	byProvider map[[2]string][]export
}

type firstExports struct {
	any    export
	byType map[string]export
}

func indexExports(st *state.State) exportIndex {
	x := exportIndex{byName: map[string]*firstExports{}, byProvider: map[[2]string][]export{}}
	n := 0
	for _, p := range st.Containers {
		for i := range p.Exports {
			e := export{n, p, &p.Exports[i]}
			n++
			k := [2]string{p.Name, e.e.Name}
			x.byProvider[k] = append(x.byProvider[k], e)
			f := x.byName[e.e.Name]
			if f == nil {
				f = &firstExports{any: e, byType: map[string]export{}}
				x.byName[e.e.Name] = f
			}
			if _, ok := f.byType[e.e.Type]; !ok {
				f.byType[e.e.Type] = e
			}
		}
	}
	return x
}

// find is the first export that answers r: of its name, of a matching
// type (either one empty, or equal), of its provider when it names one.
func (x exportIndex) find(r state.ServiceRequirement) (export, bool) {
	if r.Provider != "" {
		for _, e := range x.byProvider[[2]string{r.Provider, r.Name}] {
			if r.Type == "" || e.e.Type == "" || e.e.Type == r.Type {
				return e, true
			}
		}
		return export{}, false
	}
	f := x.byName[r.Name]
	if f == nil {
		return export{}, false
	}
	if r.Type == "" {
		return f.any, true
	}
	typed, ok1 := f.byType[r.Type]
	untyped, ok2 := f.byType[""]
	switch {
	case ok1 && ok2:
		if untyped.order < typed.order {
			return untyped, true
		}
		return typed, true
	case ok1:
		return typed, true
	case ok2:
		return untyped, true
	}
	return export{}, false
}

func (x exportIndex) resolve(c *state.Container, r state.ServiceRequirement) (Link, bool) {
	if r.Name == "" {
		return Link{}, false
	}
	found, ok := x.find(r)
	if !ok {
		return Link{}, false
	}
	return linkOf(c, found.provider, r, *found.e), true
}

// linkOf is the link of consumer c's requirement r to provider p's
// export e.
func linkOf(c, p *state.Container, r state.ServiceRequirement, e state.ServiceExport) Link {
	l := Link{Consumer: c.Name, Provider: p.Name, Name: r.Name, Type: r.Type, Role: r.Role,
		Interface: r.Interface, Target: r.Target, Socket: e.Socket, Port: e.Port}
	if l.Type == "" {
		l.Type = e.Type
	}
	if l.Role == "" {
		l.Role = DefaultRole
	}
	return l
}

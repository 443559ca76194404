package state

import (
	"net/netip"
	"sort"
)

// The parser looks containers, groups, pools and services up by name
// through maps built once, never by a scan of the list per lookup: a
// state is untrusted input of up to 32 MiB, and a scan per reference made
// validation quadratic (a 4 MiB upload of 40 000 containers each
// requiring a service took 16 s of the supervisor's CPU).

// container is p.st.Container(name), through the index readContainers
// built.
func (p *parser) container(name string) *Container {
	return p.byName[name]
}

// group is p.st.Group(name): the first group of that name.
func (p *parser) group(name string) *Group {
	if p.groupAt == nil {
		p.groupAt = make(map[string]int, len(p.st.Groups))
		for i := len(p.st.Groups) - 1; i >= 0; i-- {
			p.groupAt[p.st.Groups[i].Name] = i
		}
	}
	if i, ok := p.groupAt[name]; ok {
		return &p.st.Groups[i]
	}
	return nil
}

// pool is p.st.Pool(name).
func (p *parser) pool(name string) *Pool {
	if p.poolAt == nil {
		p.poolAt = make(map[string]int, len(p.st.Pools))
		for i := len(p.st.Pools) - 1; i >= 0; i-- {
			p.poolAt[p.st.Pools[i].Name] = i
		}
	}
	if i, ok := p.poolAt[name]; ok {
		return &p.st.Pools[i]
	}
	return nil
}

// export is c's first export of service name, or nil.
func (p *parser) export(c *Container, name string) *ServiceExport {
	if p.exportAt == nil {
		p.indexExports()
	}
	if i, ok := p.exportAt[exportKey{c.Name, name}]; ok {
		return &c.Exports[i]
	}
	return nil
}

type exportKey struct{ container, service string }

// exporters of one service name, in container order: what
// validateServices needs to find the first one of a type, and to name
// one of the wrong type when there is none.
type exporters struct {
	first  *ServiceExport           // the first, whatever its type
	byType map[string]orderedExport // the first of each type ("" an unknown one)
	last   *exporter                // the last
}

// orderedExport is an export and its place among the state's exports.
type orderedExport struct {
	n int
	e *ServiceExport
}

type exporter struct {
	container *Container
	export    *ServiceExport
}

func (p *parser) indexExports() {
	p.exportAt = map[exportKey]int{}
	p.exporters = map[string]*exporters{}
	n := 0
	for _, c := range p.st.Containers {
		for i := range c.Exports {
			e := &c.Exports[i]
			n++
			k := exportKey{c.Name, e.Name}
			if _, dup := p.exportAt[k]; dup {
				continue // c's first export of the name is the one
			}
			p.exportAt[k] = i
			x := p.exporters[e.Name]
			if x == nil {
				x = &exporters{first: e, byType: map[string]orderedExport{}}
				p.exporters[e.Name] = x
			}
			if _, ok := x.byType[e.Type]; !ok {
				x.byType[e.Type] = orderedExport{n, e}
			}
			x.last = &exporter{c, e}
		}
	}
}

// provider is the export a requirement of service name and type want is
// linked to when it names no provider: the first container's (in
// container order) whose type matches (typesMatch). Without one, wrong
// names the last container that exports name with another type, or is
// nil.
func (p *parser) provider(name, want string) (found *ServiceExport, wrong *exporter) {
	if p.exporters == nil {
		p.indexExports()
	}
	x := p.exporters[name]
	if x == nil {
		return nil, nil
	}
	if want == "" {
		return x.first, nil
	}
	// Among the exports of type want and those of no known type, the
	// first in container order.
	a, okA := x.byType[want]
	b, okB := x.byType[""]
	switch {
	case okA && okB && b.n < a.n, !okA && okB:
		return b.e, nil
	case okA:
		return a.e, nil
	}
	return nil, x.last
}

// firstOverlaps returns, for each prefix, the index of the first earlier
// valid prefix that overlaps it, or -1 (and -1 for an invalid prefix),
// without comparing every pair. Two prefixes overlap when one contains
// the other: an earlier prefix containing p is one of p's at most 33
// ancestors, looked up in a map; one inside p, or starting where p
// does, starts within p's range, and the first of those is a range
// minimum over the prefixes sorted by their first address.
func firstOverlaps(prefixes []netip.Prefix) []int {
	out := make([]int, len(prefixes))
	type start struct {
		addr  uint32
		index int
	}
	var starts []start
	for i, pfx := range prefixes {
		out[i] = -1
		if pfx.IsValid() && pfx.Addr().Is4() {
			starts = append(starts, start{u32(pfx.Masked().Addr()), i})
		}
	}
	sort.Slice(starts, func(a, b int) bool {
		if starts[a].addr != starts[b].addr {
			return starts[a].addr < starts[b].addr
		}
		return starts[a].index < starts[b].index
	})
	order := make([]int, len(starts))
	for k, s := range starts {
		order[k] = s.index
	}
	rmq := newRangeMin(order)
	seen := map[netip.Prefix]int{} // each prefix's first index, so far
	for i, pfx := range prefixes {
		if !pfx.IsValid() || !pfx.Addr().Is4() {
			continue
		}
		pfx = pfx.Masked()
		best := -1
		for bits := 0; bits <= pfx.Bits(); bits++ {
			anc := netip.PrefixFrom(pfx.Addr(), bits).Masked()
			if j, ok := seen[anc]; ok && (best < 0 || j < best) {
				best = j
			}
		}
		lo, hi := u32(pfx.Addr()), u32(Broadcast(pfx))
		from := sort.Search(len(starts), func(k int) bool { return starts[k].addr >= lo })
		to := sort.Search(len(starts), func(k int) bool { return starts[k].addr > hi })
		if j := rmq.min(from, to); j < i && (best < 0 || j < best) {
			best = j
		}
		out[i] = best
		if _, ok := seen[pfx]; !ok {
			seen[pfx] = i
		}
	}
	return out
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// rangeMin answers the minimum of v[from:to] in constant time (a sparse
// table: the minimum of every power-of-two run).
type rangeMin struct{ t [][]int }

func newRangeMin(v []int) rangeMin {
	t := [][]int{v}
	for w := 1; 2*w <= len(v); w *= 2 {
		prev := t[len(t)-1]
		next := make([]int, len(v)-2*w+1)
		for k := range next {
			next[k] = min(prev[k], prev[k+w])
		}
		t = append(t, next)
	}
	return rangeMin{t}
}

// min of v[from:to], or the largest int for an empty range.
func (r rangeMin) min(from, to int) int {
	if from >= to {
		return int(^uint(0) >> 1)
	}
	lvl := 0
	for 1<<(lvl+1) <= to-from {
		lvl++
	}
	return min(r.t[lvl][from], r.t[lvl][to-1<<lvl])
}

// listenIndex finds, among listen addresses added in order, the first
// that overlaps a given one (overlaps: the same port, and the same
// address or either the wildcard) without a scan of them all.
type listenIndex struct {
	first map[uint16]indexedAddr // the first added on each port
	other map[uint16]int         // the first on each port at another address than first's
	wild  map[uint16]int         // the first wildcard on each port
	exact map[netip.AddrPort]int // the first added at each address
	http  map[httpRoute]int      // ingress: the first http rule of each address and prefix
	plain map[netip.AddrPort]int // ingress: the first tcp rule at each address
}

type indexedAddr struct {
	index int
	addr  netip.Addr
}

type httpRoute struct {
	addr   netip.AddrPort
	prefix string
}

func newListenIndex() *listenIndex {
	return &listenIndex{
		first: map[uint16]indexedAddr{}, other: map[uint16]int{}, wild: map[uint16]int{},
		exact: map[netip.AddrPort]int{}, http: map[httpRoute]int{}, plain: map[netip.AddrPort]int{},
	}
}

// add records address a as the one of index i, after every earlier one.
func (x *listenIndex) add(a netip.AddrPort, i int) {
	port := a.Port()
	if f, ok := x.first[port]; !ok {
		x.first[port] = indexedAddr{i, a.Addr()}
	} else if _, ok := x.other[port]; !ok && f.addr != a.Addr() {
		x.other[port] = i
	}
	if _, ok := x.wild[port]; !ok && a.Addr().IsUnspecified() {
		x.wild[port] = i
	}
	if _, ok := x.exact[a]; !ok {
		x.exact[a] = i
	}
}

// addRule is add for an ingress rule, which also records its type and
// prefix.
func (x *listenIndex) addRule(r IngressRule, i int) {
	x.add(r.Addr, i)
	if r.Type == "http" {
		if _, ok := x.http[httpRoute{r.Addr, r.Prefix}]; !ok {
			x.http[httpRoute{r.Addr, r.Prefix}] = i
		}
	} else if _, ok := x.plain[r.Addr]; !ok {
		x.plain[r.Addr] = i
	}
}

// elsewhere is the first added at another address than a's that overlaps
// it, or -1.
func (x *listenIndex) elsewhere(a netip.AddrPort) int {
	port := a.Port()
	if !a.Addr().IsUnspecified() {
		return lookup(x.wild, port)
	}
	if f, ok := x.first[port]; ok && f.addr != a.Addr() {
		return f.index
	}
	return lookup(x.other, port)
}

// overlapping is the first added that overlaps a, or -1.
func (x *listenIndex) overlapping(a netip.AddrPort) int {
	return earliest(x.elsewhere(a), lookup(x.exact, a))
}

// collision is the first ingress rule added whose listener r's would
// collide with: every overlapping one, but an http rule at r's own
// address with another prefix (one listener routes both).
func (x *listenIndex) collision(r IngressRule) int {
	same := lookup(x.exact, r.Addr)
	if r.Type == "http" {
		same = earliest(lookup(x.plain, r.Addr), lookup(x.http, httpRoute{r.Addr, r.Prefix}))
	}
	return earliest(x.elsewhere(r.Addr), same)
}

func lookup[K comparable](m map[K]int, k K) int {
	if i, ok := m[k]; ok {
		return i
	}
	return -1
}

// earliest of two indexes, -1 meaning none.
func earliest(a, b int) int {
	switch {
	case a < 0:
		return b
	case b < 0:
		return a
	}
	return min(a, b)
}

package xconnect

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/pantavisor/pv/state"
)

// scanGraph is Graph as it was, scanning every export per requirement:
// the index must give the same links.
func scanGraph(st *state.State) []Link {
	return graphBy(st, func(c *state.Container, r state.ServiceRequirement) (Link, bool) { return scanResolve(st, c, r) })
}

func scanResolve(st *state.State, c *state.Container, r state.ServiceRequirement) (Link, bool) {
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
			return linkOf(c, p, r, e), true
		}
	}
	return Link{}, false
}

func TestGraphIndexAnswersAsTheScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	types := []string{"", "unix", "tcp", "rest"}
	names := []string{"", "a", "b", "c"}
	for round := 0; round < 500; round++ {
		st := &state.State{}
		n := 1 + rng.IntN(6)
		for i := 0; i < n; i++ {
			c := &state.Container{Name: fmt.Sprintf("c%d", i)}
			for j := rng.IntN(4); j > 0; j-- {
				c.Exports = append(c.Exports, state.ServiceExport{Name: names[rng.IntN(len(names))], Type: types[rng.IntN(len(types))], Port: j})
			}
			for j := rng.IntN(4); j > 0; j-- {
				r := state.ServiceRequirement{Name: names[rng.IntN(len(names))], Type: types[rng.IntN(len(types))]}
				if rng.IntN(3) == 0 {
					r.Provider = fmt.Sprintf("c%d", rng.IntN(n+1))
				}
				if rng.IntN(2) == 0 {
					c.Requires = append(c.Requires, r)
				} else {
					c.Optional = append(c.Optional, r)
				}
			}
			st.Containers = append(st.Containers, c)
		}
		if got, want := Graph(st), scanGraph(st); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: Graph %+v, the scan %+v", round, got, want)
		}
	}
}

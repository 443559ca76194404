package ctrl

import (
	"encoding/json"
	"slices"
	"sync"

	"github.com/pantavisor/pv/messages"
)

// containersCache keeps the last GET /containers answer with a copy of the
// list it encodes. A device is polled (pvcontrol ls, management
// containers, tests waiting for a status) far more often than its
// containers change, and encoding the list is most of a request's cost
// (ARCHITECTURE.md, Performance notes): a list equal to the last one gets
// the same bytes without encoding. Equality is by value, on a copy, so a
// backend that reuses or changes its slices cannot make the answer stale.
type containersCache struct {
	mu   sync.Mutex
	cs   []messages.ContainerInfo
	body []byte
	// last is the list as the backend gave it: the same list handed out
	// again (Backend.Containers never changes a list it returned) is the
	// same answer without comparing.
	last []messages.ContainerInfo
}

// encode returns the JSON of cs: the cached bytes when cs equals the last
// list, else json.Marshal's, which it keeps when cs can be compared.
func (c *containersCache) encode(cs []messages.ContainerInfo) ([]byte, error) {
	c.mu.Lock()
	if c.body != nil && (sameList(c.last, cs) || containersEqual(c.cs, cs)) {
		b := c.body
		c.last = cs
		c.mu.Unlock()
		return b, nil
	}
	c.mu.Unlock()
	b, err := json.Marshal(cs)
	if err != nil || !cacheable(cs) {
		return b, err
	}
	cp := cloneContainers(cs)
	c.mu.Lock()
	c.cs, c.body, c.last = cp, b, cs
	c.mu.Unlock()
	return b, nil
}

// sameList reports whether a and b are the same list: the same elements
// of the same backing array.
func sameList(a, b []messages.ContainerInfo) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

// cacheable reports whether containersEqual can compare cs: Provides and
// Consumes hold values of any type, so only empty ones are compared.
func cacheable(cs []messages.ContainerInfo) bool {
	for i := range cs {
		if len(cs[i].Provides) != 0 || len(cs[i].Consumes) != 0 {
			return false
		}
	}
	return true
}

// cloneContainers copies cs deeply enough that no later change to cs
// reaches the copy.
func cloneContainers(cs []messages.ContainerInfo) []messages.ContainerInfo {
	out := slices.Clone(cs)
	for i := range out {
		c := &out[i]
		c.Roles = slices.Clone(c.Roles)
		c.Provides = slices.Clone(c.Provides)
		c.Consumes = slices.Clone(c.Consumes)
		if c.LastExit != nil {
			e := *c.LastExit
			c.LastExit = &e
		}
		if t := c.AutoRecovery.NextRetryAt; t != nil {
			tc := *t
			c.AutoRecovery.NextRetryAt = &tc
		}
	}
	return out
}

// containersEqual reports whether a and b encode to the same JSON: every
// field equal, nil and empty slices told apart (null against []). a must
// be cacheable. Times are compared with ==, location included, which is
// stricter than the encoding needs.
func containersEqual(a, b []messages.ContainerInfo) bool {
	return slices.EqualFunc(a, b, func(x, y messages.ContainerInfo) bool {
		return x.Name == y.Name && x.Group == y.Group && x.Status == y.Status &&
			x.StatusGoal == y.StatusGoal && x.RestartPolicy == y.RestartPolicy &&
			x.Pid == y.Pid && x.UptimeSecs == y.UptimeSecs && x.Error == y.Error &&
			x.IPv4Address == y.IPv4Address && x.MACAddress == y.MACAddress && x.Pool == y.Pool &&
			recoveryEqual(x.AutoRecovery, y.AutoRecovery) &&
			sameSlice(x.Roles, y.Roles) && slices.Equal(x.Roles, y.Roles) &&
			sameSlice(x.Provides, y.Provides) && len(y.Provides) == 0 &&
			sameSlice(x.Consumes, y.Consumes) && len(y.Consumes) == 0 &&
			ptrEqual(x.LastExit, y.LastExit)
	})
}

func recoveryEqual(x, y messages.AutoRecovery) bool {
	xt, yt := x.NextRetryAt, y.NextRetryAt
	x.NextRetryAt, y.NextRetryAt = nil, nil
	return x == y && ptrEqual(xt, yt)
}

// sameSlice reports whether a and b are both nil or both not nil.
func sameSlice[T any](a, b []T) bool { return (a == nil) == (b == nil) }

// ptrEqual reports whether a and b are both nil or point to equal values.
func ptrEqual[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

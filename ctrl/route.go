package ctrl

import (
	"fmt"
	"net/http"
	"strings"
)

// perm is the permission a route needs.
type perm int

const (
	// permAny admits every identified caller: the host and any container.
	permAny perm = iota
	// permMgmt admits the host and containers with role mgmt.
	permMgmt
)

func (p perm) String() string {
	if p == permMgmt {
		return "mgmt"
	}
	return "any"
}

// wildcard is the pattern segment that matches any one non-empty segment.
const wildcard = "{}"

// call is what the router hands a handler besides the request.
type call struct {
	caller caller
	// args are the path segments the pattern's wildcards matched, in order.
	args []string
}

// handler serves one route. It answers through w and must not keep r or c.
type handler func(s *Server, w http.ResponseWriter, r *http.Request, c *call)

// route is one endpoint: a row of the table in routes.go.
type route struct {
	method  string
	pattern string
	perm    perm
	// maxBody is the largest request body accepted, in bytes; 0 refuses
	// any body, bodyObject takes the server's Storage.MaxObject.
	maxBody int64
	handle  handler

	segs []string
	// rank orders routes matching the same path: bit i (from the left) is
	// set when segment i is literal, so a higher rank is more specific.
	rank uint64
	// wild is set when the pattern has a wildcard, so args must be cut.
	wild bool
}

// router matches request paths against the route table without allocating
// for routes that have no wildcard.
type router struct {
	// byFirst indexes routes by their first segment, which must be literal.
	byFirst map[string][]*route
}

// newRouter compiles a route table. It fails on a malformed pattern, a
// wildcard first segment, or two routes with the same method and pattern.
func newRouter(table []route) (*router, error) {
	rt := &router{byFirst: make(map[string][]*route)}
	seen := make(map[string]bool)
	for i := range table {
		r := table[i]
		if !strings.HasPrefix(r.pattern, "/") || strings.HasSuffix(r.pattern, "/") {
			return nil, fmt.Errorf("compile route %s %s: pattern must start and not end with /", r.method, r.pattern)
		}
		if r.handle == nil {
			return nil, fmt.Errorf("compile route %s %s: no handler", r.method, r.pattern)
		}
		r.segs = strings.Split(r.pattern[1:], "/")
		if len(r.segs) > 64 {
			return nil, fmt.Errorf("compile route %s %s: too many segments", r.method, r.pattern)
		}
		for j, s := range r.segs {
			switch {
			case s == "":
				return nil, fmt.Errorf("compile route %s %s: empty segment", r.method, r.pattern)
			case s == wildcard:
				if j == 0 {
					return nil, fmt.Errorf("compile route %s %s: first segment must be literal", r.method, r.pattern)
				}
				r.wild = true
			case strings.ContainsAny(s, "{}"):
				return nil, fmt.Errorf("compile route %s %s: a wildcard must be a whole segment", r.method, r.pattern)
			default:
				r.rank |= 1 << (63 - j)
			}
		}
		key := r.method + " " + r.pattern
		if seen[key] {
			return nil, fmt.Errorf("compile route %s: duplicate", key)
		}
		seen[key] = true
		rt.byFirst[r.segs[0]] = append(rt.byFirst[r.segs[0]], &r)
	}
	return rt, nil
}

// match finds the most specific route for method and path. pathKnown
// reports whether some route, of any method, has that path; it tells an
// unknown endpoint from an unsupported method.
func (rt *router) match(method, path string) (best *route, args []string, pathKnown bool) {
	if !strings.HasPrefix(path, "/") {
		return nil, nil, false
	}
	rest := path[1:]
	first, _, _ := strings.Cut(rest, "/")
	for _, r := range rt.byFirst[first] {
		if !matches(r.segs, rest) {
			continue
		}
		pathKnown = true
		if r.method == method && (best == nil || r.rank > best.rank) {
			best = r
		}
	}
	if best != nil && best.wild {
		args = wildcardArgs(best.segs, rest)
	}
	return best, args, pathKnown
}

// matches reports whether the path (without its leading /) has exactly the
// pattern's segments, a wildcard standing for any non-empty segment.
func matches(segs []string, rest string) bool {
	for i, s := range segs {
		seg, tail, more := strings.Cut(rest, "/")
		if s == wildcard {
			if seg == "" {
				return false
			}
		} else if seg != s {
			return false
		}
		if more != (i < len(segs)-1) {
			return false
		}
		rest = tail
	}
	return true
}

// wildcardArgs returns the path segments matched by the pattern's wildcards;
// the path must match the pattern.
func wildcardArgs(segs []string, rest string) []string {
	var args []string
	for _, s := range segs {
		seg, tail, _ := strings.Cut(rest, "/")
		if s == wildcard {
			args = append(args, seg)
		}
		rest = tail
	}
	return args
}

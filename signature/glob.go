package signature

import (
	"path"
	"strings"
)

// globMatch matches key against an include or exclude glob of a pvs
// header as upstream does: fnmatch(3) with FNM_PATHNAME ('*', '?' and a
// bracket expression do not match '/'), and for "x/**" the pattern
// dirname("x/**") with FNM_LEADING_DIR (x itself, or anything below it).
// "**" alone is the empty pattern with FNM_LEADING_DIR, which matches no
// state key (none starts with '/'): upstream's reading, kept so that a
// device decides as an upstream one. A pattern fnmatch would refuse
// matches nothing.
func globMatch(glob, key string) bool {
	pat, leading := glob, false
	switch {
	case glob == "**":
		pat, leading = "", true
	case strings.HasSuffix(glob, "/**"):
		pat, leading = dirname(glob), true
	}
	pat = fnmatchClasses(pat)
	// Segment by segment: with FNM_PATHNAME only a '/' of the pattern
	// matches a '/' of the key, where path.Match lets a bracket
	// expression match one; and FNM_LEADING_DIR, the key's first
	// segments, costs one pass rather than one per prefix.
	for {
		p, pRest, pMore := strings.Cut(pat, "/")
		k, kRest, kMore := strings.Cut(key, "/")
		if ok, _ := path.Match(p, k); !ok {
			return false
		}
		switch {
		case !pMore:
			return !kMore || leading
		case !kMore:
			return false
		}
		pat, key = pRest, kRest
	}
}

// dirname is dirname(3) of a glob that ends in "/**", as upstream takes
// it: without its last segment and the slashes before it, "/" when
// nothing is left. Not path.Dir, which also cleans the path: "a/./**" is
// the pattern "a/.", which matches no key, not "a".
func dirname(glob string) string {
	if d := strings.TrimRight(strings.TrimSuffix(glob, "**"), "/"); d != "" {
		return d
	}
	return "/"
}

// selection applies a signature's include globs, then its exclude
// globs, to keys, as upstream does: in are the keys it signs, named those
// any of its globs matches (covered, in strict mode, whether included or
// excluded), both in the order of keys.
func selection(keys, include, exclude []string) (in, named []string) {
	return selectKeys(keys, newGlobSet(include), newGlobSet(exclude))
}

func selectKeys(keys []string, include, exclude globSet) (in, named []string) {
	for _, key := range keys {
		included, excluded := include.match(key), exclude.match(key)
		if included && !excluded {
			in = append(in, key)
		}
		if included || excluded {
			named = append(named, key)
		}
	}
	return in, named
}

// globSet is a signature's include or exclude globs, ready to match: a
// glob without wildcards is looked up (pvr lists a package's files one by
// one) or, "x/**", compared, the others are matched.
type globSet struct {
	exact   map[string]bool
	leading []string // "x" of "x/**"
	wild    []string
}

func newGlobSet(globs []string) globSet {
	s := globSet{exact: map[string]bool{}}
	for _, g := range globs {
		pat, leading := g, false
		switch {
		case g == "**":
			pat, leading = "", true
		case strings.HasSuffix(g, "/**"):
			pat, leading = dirname(g), true
		}
		switch {
		case strings.ContainsAny(pat, `*?[\`):
			s.wild = append(s.wild, g)
		case leading:
			s.leading = append(s.leading, pat)
		default:
			s.exact[pat] = true
		}
	}
	return s
}

// match says whether a glob of s matches key, as globMatch.
func (s globSet) match(key string) bool {
	if s.exact[key] {
		return true
	}
	for _, p := range s.leading {
		if key == p || len(key) > len(p) && key[len(p)] == '/' && key[:len(p)] == p {
			return true
		}
	}
	for _, g := range s.wild {
		if globMatch(g, key) {
			return true
		}
	}
	return false
}

// cost bounds what matching keys, n of them of keyBytes bytes (each
// counted one more), against s costs: a look-up reads each key once, a
// comparison its glob; path.Match compares a glob segment with a key's in
// steps of their lengths' sum, or their product for a segment with a
// '*', which tries each position of the key's.
func (s globSet) cost(n int, keyBytes int64) int64 {
	c := keyBytes
	for _, p := range s.leading {
		c += int64(len(p)+2) * int64(n)
	}
	for _, g := range s.wild {
		star := 0
		for seg := range strings.SplitSeq(g, "/") {
			if strings.Contains(seg, "*") {
				star = max(star, len(seg))
			}
		}
		c += int64(len(g)+1)*int64(n) + int64(star+1)*keyBytes
	}
	return c
}

// fnmatchClasses writes fnmatch's negated class "[!...]" as path.Match's
// "[^...]".
func fnmatchClasses(pat string) string {
	if !strings.Contains(pat, "[!") {
		return pat
	}
	var b strings.Builder
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		b.WriteByte(c)
		switch {
		case c == '\\' && i+1 < len(pat):
			i++
			b.WriteByte(pat[i])
		case c == '[' && i+1 < len(pat) && pat[i+1] == '!':
			b.WriteByte('^')
			i++
		}
	}
	return b.String()
}

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
	for _, key := range keys {
		included, matched := false, false
		for _, g := range include {
			if globMatch(g, key) {
				included, matched = true, true
			}
		}
		for _, g := range exclude {
			if globMatch(g, key) {
				included, matched = false, true
			}
		}
		if included {
			in = append(in, key)
		}
		if matched {
			named = append(named, key)
		}
	}
	return in, named
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

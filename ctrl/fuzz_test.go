package ctrl

import (
	"strings"
	"testing"
)

// FuzzRouterMatch feeds arbitrary request paths to the route table: it must
// never panic, and a match must bind exactly one argument per wildcard,
// each a non-empty segment without a slash.
func FuzzRouterMatch(f *testing.F) {
	for _, p := range []string{"/containers", "/containers/web", "/containers//", "/signal", "", "//", "/containers/a/b", "/%2F"} {
		f.Add("PUT", p)
		f.Add("GET", p)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		rt, args, known := defaultRouter.match(method, path)
		if rt == nil {
			return
		}
		if !known {
			t.Fatalf("matched %s %s but path not known", method, path)
		}
		if want := strings.Count(rt.pattern, wildcard); len(args) != want {
			t.Fatalf("%s: %d args for %d wildcards", path, len(args), want)
		}
		for _, a := range args {
			if a == "" || strings.Contains(a, "/") {
				t.Fatalf("%s: bad wildcard value %q", path, a)
			}
		}
	})
}

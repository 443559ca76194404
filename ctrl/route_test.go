package ctrl

import (
	"net/http"
	"slices"
	"testing"
)

func nop(*Server, http.ResponseWriter, *http.Request, *call) {}

func TestRouterMatch(t *testing.T) {
	rt, err := newRouter([]route{
		{method: "GET", pattern: "/objects", handle: nop},
		{method: "GET", pattern: "/objects/{}", handle: nop},
		{method: "PUT", pattern: "/objects/{}", handle: nop},
		{method: "GET", pattern: "/steps/{}", handle: nop},
		{method: "GET", pattern: "/steps/locals/{}", handle: nop},
		{method: "GET", pattern: "/steps/{}/progress", handle: nop},
		{method: "GET", pattern: "/steps/locals/{}/progress", handle: nop},
		{method: "PUT", pattern: "/drivers/load", handle: nop},
		{method: "PUT", pattern: "/drivers/{}/load", handle: nop},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, method, path string
		want               string // pattern, "" for none
		args               []string
		pathKnown          bool
	}{
		{"literal", "GET", "/objects", "/objects", nil, true},
		{"wildcard", "GET", "/objects/abc", "/objects/{}", []string{"abc"}, true},
		{"method picks row", "PUT", "/objects/abc", "/objects/{}", []string{"abc"}, true},
		{"wrong method", "DELETE", "/objects/abc", "", nil, true},
		{"empty wildcard", "GET", "/objects/", "", nil, false},
		{"too deep", "GET", "/objects/a/b", "", nil, false},
		{"literal beats wildcard", "GET", "/steps/locals/x", "/steps/locals/{}", []string{"x"}, true},
		{"leftmost literal wins", "GET", "/steps/locals/progress", "/steps/locals/{}", []string{"progress"}, true},
		{"wildcard then literal", "GET", "/steps/42/progress", "/steps/{}/progress", []string{"42"}, true},
		{"two literals", "GET", "/steps/locals/x/progress", "/steps/locals/{}/progress", []string{"x"}, true},
		{"literal row", "PUT", "/drivers/load", "/drivers/load", nil, true},
		{"wildcard row", "PUT", "/drivers/usb/load", "/drivers/{}/load", []string{"usb"}, true},
		{"unknown first segment", "GET", "/nope", "", nil, false},
		{"root", "GET", "/", "", nil, false},
		{"no leading slash", "GET", "objects", "", nil, false},
		{"empty path", "GET", "", "", nil, false},
		{"double slash", "GET", "//objects", "", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, args, known := rt.match(c.method, c.path)
			got := ""
			if r != nil {
				got = r.pattern
			}
			if got != c.want || !slices.Equal(args, c.args) || known != c.pathKnown {
				t.Errorf("match = %q %q %v, want %q %q %v", got, args, known, c.want, c.args, c.pathKnown)
			}
		})
	}
}

func TestNewRouterRejects(t *testing.T) {
	cases := []struct {
		name string
		r    route
	}{
		{"no leading slash", route{method: "GET", pattern: "x", handle: nop}},
		{"trailing slash", route{method: "GET", pattern: "/x/", handle: nop}},
		{"empty segment", route{method: "GET", pattern: "/x//y", handle: nop}},
		{"wildcard first", route{method: "GET", pattern: "/{}", handle: nop}},
		{"partial wildcard", route{method: "GET", pattern: "/x/a{}", handle: nop}},
		{"no handler", route{method: "GET", pattern: "/x"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := newRouter([]route{c.r}); err == nil {
				t.Error("accepted")
			}
		})
	}
	dup := route{method: "GET", pattern: "/x/{}", handle: nop}
	if _, err := newRouter([]route{dup, dup}); err == nil {
		t.Error("accepted a duplicate route")
	}
}

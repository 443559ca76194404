package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixturesDir holds real upstream states (pvtx test resources and expected
// outputs), shipped beside the repository in shared/.
func fixturesDir(t testing.TB) string {
	t.Helper()
	for _, d := range []string{
		os.Getenv("UPSTREAM_FIXTURES"),
		"../../shared/fixtures/upstream-pvtx",
		"../shared/fixtures/upstream-pvtx",
		"testdata/upstream-pvtx",
	} {
		if d == "" {
			continue
		}
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
	}
	t.Fatal("upstream fixtures not found: set UPSTREAM_FIXTURES")
	return ""
}

func fixtureFiles(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join(fixturesDir(t), "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	return files
}

func TestFixturesValidateAppengine(t *testing.T) {
	files := fixtureFiles(t)
	if len(files) != 29 {
		t.Errorf("found %d fixtures, want 29", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			st, err := Parse(data, Options{AppEngine: true})
			if err != nil {
				t.Fatalf("appengine: %v", err)
			}
			for _, w := range st.Warnings {
				t.Logf("warning: %s", w)
			}
			embedded, err := Parse(data, Options{})
			hasBSP := strings.Contains(string(data), `"bsp/run.json"`)
			switch {
			case hasBSP && err != nil:
				t.Errorf("embedded: %v", err)
			case !hasBSP && err == nil:
				t.Errorf("embedded: a state without bsp/run.json validated")
			case hasBSP && embedded.BSP == nil:
				t.Errorf("embedded: BSP not parsed")
			}
		})
	}
}

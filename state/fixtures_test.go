package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixturesDir holds real upstream states (pvtx test resources and expected
// outputs), kept in the repository's testdata/ (see its README for their
// origin and license).
func fixturesDir(t testing.TB) string {
	t.Helper()
	const dir = "../testdata/upstream-pvtx"
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("upstream fixtures: %v", err)
	}
	return dir
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

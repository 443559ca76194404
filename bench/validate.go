package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/pantavisor/pv/state"
)

// FixturesDir is where the upstream state fixtures are: the repository's
// testdata/ from its root, where make bench runs; pvbench -fixtures sets it.
var FixturesDir = "testdata/upstream-pvtx"

// largestFixture returns the biggest upstream state, the worst case for the
// parser among real revisions.
func largestFixture() ([]byte, string, error) {
	files, err := filepath.Glob(filepath.Join(FixturesDir, "*.json"))
	if err != nil || len(files) == 0 {
		return nil, "", fmt.Errorf("no fixtures in %s", FixturesDir)
	}
	var best []byte
	var name string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, "", err
		}
		if len(data) > len(best) {
			best, name = data, filepath.Base(f)
		}
	}
	return best, name, nil
}

func init() {
	Register(Figure{
		Name:     "validate largest upstream state (Parse + all rules)",
		Baseline: "encoding/json decode into any",
		Unit:     "µs/state",
		Goal:     3,
		Run: func() (float64, float64, error) {
			data, _, err := largestFixture()
			if err != nil {
				return 0, 0, err
			}
			if _, err := state.Parse(data, state.Options{AppEngine: true}); err != nil {
				return 0, 0, fmt.Errorf("fixture does not validate: %w", err)
			}
			ours := NsPerOp(func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := state.Parse(data, state.Options{AppEngine: true}); err != nil {
						b.Fatal(err)
					}
				}
			})
			base := NsPerOp(func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					var v any
					if err := json.Unmarshal(data, &v); err != nil {
						b.Fatal(err)
					}
				}
			})
			return ours / 1e3, base / 1e3, nil
		},
	})
}

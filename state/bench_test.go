package state

import (
	"os"
	"path/filepath"
	"testing"
)

func BenchmarkParseLargestFixture(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(fixturesDir(b), "expected-state_after_new_package.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(data, Options{AppEngine: true}); err != nil {
			b.Fatal(err)
		}
	}
}

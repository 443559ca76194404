package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pantavisor/pv/storage"
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

// zeros reads n zero bytes.
func zeros(n int64) io.Reader { return io.LimitReader(zeroReader{}, n) }

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// benchTrail installs a revision whose root volume is an object of size
// bytes, the way an update lands on a device, and returns its trail.
func benchTrail(b *testing.B, size int64) string {
	b.Helper()
	l := storage.Layout{Root: b.TempDir()}
	h := sha256.New()
	io.Copy(h, zeros(size))
	root := hex.EncodeToString(h.Sum(nil))
	conf := sha256.Sum256([]byte(testLXC))
	confSha := hex.EncodeToString(conf[:])
	for sha, r := range map[string]io.Reader{root: zeros(size), confSha: strings.NewReader(testLXC)} {
		if _, err := l.PutObject(sha, r, 0); err != nil {
			b.Fatal(err)
		}
	}
	st, err := json.Marshal(map[string]any{
		"#spec":       SpecSystem1,
		"device.json": map[string]any{"groups": []any{map[string]any{"name": "app"}}},
		"app/run.json": map[string]any{"name": "app", "type": "lxc", "config": "lxc.container.conf",
			"root-volume": "root.squashfs", "storage": map[string]any{"lxc-overlay": map[string]any{"persistence": "boot"}}},
		"app/lxc.container.conf": confSha,
		"app/root.squashfs":      root,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := l.InstallTrail("1", st, storage.InstallOptions{}); err != nil {
		b.Fatal(err)
	}
	return l.Trail("1")
}

// BenchmarkLoadTrail reads a revision as a boot does (objects trusted on
// their verified mark) and as `pantavisor validate` does (every object
// hashed), with a 1 MB and a 200 MB root volume. A boot's time should not
// depend on the size of the objects.
func BenchmarkLoadTrail(b *testing.B) {
	for _, mode := range []struct {
		name   string
		verify bool
	}{{"boot", false}, {"validate", true}} {
		for _, size := range []int64{1 << 20, 200 << 20} {
			b.Run(fmt.Sprintf("%s/%dMB", mode.name, size>>20), func(b *testing.B) {
				trail := benchTrail(b, size)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := LoadTrail(trail, Options{AppEngine: true, VerifyObjects: mode.verify}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

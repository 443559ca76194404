package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// volumeTree builds a volume root holding etc/passwd of its own and
// symlinks that, followed on the host, would leave it.
func volumeTree(t testing.TB) string {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"link":    "/",
		"passwd":  "/etc/passwd",
		"climb":   "../../../../etc",
		"etc/up":  "../..",
		"loop":    "loop",
		"missing": "/nope",
	} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestResolveInStaysInside(t *testing.T) {
	root := volumeTree(t)
	tests := []struct{ rel, want, err string }{
		{"", root, ""},
		{"/", root, ""},
		{"link", root, ""}, // link -> / is the image's own root
		{"link/etc/passwd", root + "/etc/passwd", ""},
		{"passwd", root + "/etc/passwd", ""},
		{"climb/passwd", root + "/etc/passwd", ""},
		{"../../..", root, ""},
		{"../../../etc/passwd", root + "/etc/passwd", ""},
		{"etc/up", root, ""},
		{"missing", "", "no such file"},
		{"loop", "", "too many"},
	}
	for _, tc := range tests {
		got, err := ResolveIn(root, tc.rel)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ResolveIn(%q) = %q, %v; want error %q", tc.rel, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ResolveIn(%q) = %q, %v; want %q", tc.rel, got, err, tc.want)
		}
	}
}

// FuzzResolveIn checks that whatever the path, with ".." and symlinks in
// the tree, the answer is inside the root or an error.
func FuzzResolveIn(f *testing.F) {
	for _, s := range []string{"link", "../..", "climb/passwd", "etc/up/etc/up/..", "link/../../x", "/etc/passwd", "a\x00b"} {
		f.Add(s)
	}
	root := volumeTree(f)
	f.Fuzz(func(t *testing.T, rel string) {
		got, err := ResolveIn(root, rel)
		if err != nil {
			return
		}
		if got != root && !strings.HasPrefix(got, root+"/") {
			t.Fatalf("ResolveIn(%q) = %q, outside %s", rel, got, root)
		}
	})
}

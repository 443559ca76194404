package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckFindings(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, l Layout)
		want   string // in the problems
	}{
		{"clean", func(*testing.T, Layout) {}, ""},
		{"rotten object", func(t *testing.T, l Layout) {
			overwrite(t, l.Object(shaOf("root")), "rot")
		}, "bad checksum"},
		{"missing object", func(t *testing.T, l Layout) {
			os.Remove(l.Object(shaOf("conf")))
			os.Remove(filepath.Join(l.Trail("1"), "app/conf"))
		}, "app/conf: object " + shaOf("conf") + " is missing"},
		{"object only in the trail is fine", func(t *testing.T, l Layout) {
			os.Remove(l.Object(shaOf("conf")))
		}, ""},
		{"torn state", func(t *testing.T, l Layout) {
			overwrite(t, filepath.Join(l.Trail("1"), TrailJSON), `{"a":`)
		}, "revision 1: parse refs"},
		{"bad progress", func(t *testing.T, l Layout) {
			overwrite(t, filepath.Join(l.Trail("1"), TrailProgress), `{"status":"MAYBE"}`)
		}, "unknown status"},
		{"temporary trail", func(t *testing.T, l Layout) {
			os.Mkdir(filepath.Join(l.Trails(), installPrefix+"123"), 0o755)
		}, "temporary file left"},
		{"temporary object", func(t *testing.T, l Layout) {
			os.WriteFile(filepath.Join(l.Objects(), "."+shaOf("x")+".tmp1"), nil, 0o600)
		}, "temporary file left"},
		{"temporary progress", func(t *testing.T, l Layout) {
			os.WriteFile(filepath.Join(l.Trail("1"), ".pv", ".progress.tmp42"), nil, 0o600)
		}, "temporary file left"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayout(t)
			install(t, l, "1", map[string]string{"app/root.squashfs": "root", "app/conf": "conf"})
			if err := l.WriteProgress("1", NewProgress(StatusNew, MsgInstalled)); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, l)
			err := l.Check()
			var ie *InconsistentError
			if tc.want == "" {
				if err != nil {
					t.Fatalf("clean store: %v", err)
				}
				return
			}
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a finding with %q", err, tc.want)
			}
		})
	}
}

// overwrite replaces a file's content, read-only or not.
func overwrite(t *testing.T, path, content string) {
	t.Helper()
	os.Chmod(path, 0o644)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRecover(t *testing.T) {
	l := newLayout(t)
	install(t, l, "1", map[string]string{"app/root.squashfs": "root"})
	if err := l.WriteProgress("1", NewProgress(StatusNew, MsgInstalled)); err != nil {
		t.Fatal(err)
	}
	leftovers := []string{
		filepath.Join(l.Trails(), installPrefix+"1", ".pvr", "json"),
		filepath.Join(l.Trails(), removePrefix+"2", "app", "x"),
		filepath.Join(l.Objects(), "."+shaOf("a")+".tmp99"),
		filepath.Join(l.Objects(), shaOf("b")+".tmp"),
		filepath.Join(l.Trail("1"), ".pv", ".progress.tmp7"),
		filepath.Join(l.Boot(), ".uboot.txt.tmp1234"),
		filepath.Join(l.Root, "cache", "meta", ".key.tmp55"),
	}
	for _, p := range leftovers {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	// Not ours: left alone.
	keep := filepath.Join(l.Objects(), "README")
	if err := os.WriteFile(keep, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	grubs := filepath.Join(l.Boot(), "grubenv.new") // grub-editenv's own
	if err := os.WriteFile(grubs, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	removed, err := l.Recover()
	if err != nil || len(removed) != len(leftovers) {
		t.Fatalf("Recover removed %v, %v", removed, err)
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{keep, grubs} {
		if _, err := os.Stat(k); err != nil {
			t.Errorf("foreign file removed: %v", err)
		}
	}
	if _, err := l.ReadProgress("1"); err != nil {
		t.Error(err)
	}
	if err := l.CheckTrail("1"); err != nil {
		t.Error(err)
	}
}

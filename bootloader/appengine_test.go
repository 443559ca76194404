package bootloader

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAppEngineEnv(t *testing.T) {
	a := AppEngine{Dir: filepath.Join(t.TempDir(), "boot")}
	env, err := a.Load()
	if err != nil || env.Revision() != "0" {
		t.Fatalf("empty env: %v %v", env, err)
	}
	if err := a.Save(Env{"pv_rev": "3", "pv_try": "4"}); err != nil {
		t.Fatal(err)
	}
	env, err = a.Load()
	if err != nil || env.Revision() != "4" || env["pv_rev"] != "3" {
		t.Fatalf("round trip: %v %v", env, err)
	}
	delete(env, "pv_try")
	if env.Revision() != "3" {
		t.Errorf("revision without try: %s", env.Revision())
	}
	if err := os.WriteFile(a.path(), []byte("pv_rev\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Load(); err == nil {
		t.Error("malformed env accepted")
	}
}

// FuzzParseEnv: never panics, and whatever parses survives a save/load
// round trip unchanged.
func FuzzParseEnv(f *testing.F) {
	f.Add([]byte("pv_rev=3\npv_try=4\n"))
	f.Add([]byte("# comment\n\n pv_rev = 0 \n"))
	f.Add([]byte("=x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := parseEnv(data)
		if err != nil {
			return
		}
		a := AppEngine{Dir: t.TempDir()}
		if err := a.Save(env); err != nil {
			return // values the format cannot hold are refused, not mangled
		}
		back, err := a.Load()
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
		if len(back) != len(env) {
			t.Fatalf("round trip: %v != %v", back, env)
		}
		for k, v := range env {
			if back[k] != strings.TrimSpace(v) && back[k] != v {
				t.Fatalf("round trip %q: %q != %q", k, back[k], v)
			}
		}
	})
}

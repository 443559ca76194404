package bootloader

import (
	"os"
	"path/filepath"
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

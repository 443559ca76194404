package bootloader

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	dir := t.TempDir()
	b, err := New(TypeAppEngine, Options{BootDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := b.(AppEngine); !ok || a.Dir != dir {
		t.Errorf("New(appengine) = %#v", b)
	}
	for _, typ := range []string{TypeUboot, TypeUbootPVK} {
		if b, err := New(typ, Options{BootDir: dir}); err != nil || b != (Uboot{Dir: dir}) {
			t.Errorf("New(%s) = %#v, %v", typ, b, err)
		}
	}
	if b, err := New(TypeGrub, Options{BootDir: dir}); err != nil || b != (Grub{Dir: dir}) {
		t.Errorf("New(grub) = %#v, %v", b, err)
	}
	r := newRPi(t)
	boot := r.BootDir
	r.BootDir = ""
	if _, err := New(TypeRPiAB, Options{BootDir: boot, RPiAB: r}); err == nil || !strings.Contains(err.Error(), "no device node for boot partition 2") {
		t.Errorf("New(rpiab) without device nodes: %v", err)
	}
	r.Devices, r.FSType = map[int]string{2: "/dev/sda2", 3: "/dev/sda3"}, "vfat"
	b, err = New(TypeRPiAB, Options{BootDir: boot, RPiAB: r})
	if rb, ok := b.(RPiAB); err != nil || !ok || rb.BootDir != boot || rb.Bootsel != r.Bootsel {
		t.Errorf("New(rpiab) = %#v, %v", b, err)
	}
	if _, err := New(TypeRPiAB, Options{BootDir: boot}); err == nil || !strings.Contains(err.Error(), "no bootsel partition") {
		t.Errorf("New(rpiab) without partitions: %v", err)
	}
	cfg := filepath.Join(dir, "fw_env.config")
	if err := os.WriteFile(cfg, []byte("/dev/mmcblk0 0x3f8000 0x4000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err = New(TypeUbootEnv, Options{FwEnvConfig: cfg})
	if u, ok := b.(UbootEnv); err != nil || !ok || fmt.Sprint(u.Copies) != "[{/dev/mmcblk0 4161536 16384}]" {
		t.Errorf("New(uboot-env) = %#v, %v", b, err)
	}
	if _, err := New(TypeUbootEnv, Options{FwEnvConfig: filepath.Join(dir, "none")}); err == nil || !strings.Contains(err.Error(), "fw_env.config") {
		t.Errorf("New(uboot-env) without a config: %v", err)
	}
	for _, typ := range []string{"lilo", "", "UBOOT", TypeUbootAB} {
		_, err := New(typ, Options{BootDir: dir})
		if !errors.Is(err, ErrUnknownType) || !strings.Contains(err.Error(), `"`+typ+`"`) {
			t.Errorf("New(%q) = %v, want ErrUnknownType naming it", typ, err)
		}
	}
	if _, err := New(TypeAppEngine, Options{}); err == nil {
		t.Error("New(appengine) without a boot directory accepted")
	}
}

// backends returns one of each backend, in fresh directories.
func backends(t *testing.T) map[string]Backend {
	t.Helper()
	return map[string]Backend{
		TypeAppEngine:               AppEngine{Dir: filepath.Join(t.TempDir(), "boot")},
		TypeUboot:                   Uboot{Dir: filepath.Join(t.TempDir(), "boot")},
		TypeGrub:                    Grub{Dir: filepath.Join(t.TempDir(), "boot")},
		TypeRPiAB:                   newRPi(t),
		TypeUbootEnv + " single":    freshEnv(t, singleEnv(zeroFile(t, 0x400), 0x400)),
		TypeUbootEnv + " redundant": freshEnv(t, redundantEnv(zeroFile(t, 0x800), 0x400)),
	}
}

// TestBackendSteps runs install, commit and fail on every backend and
// checks the variables after each step, including that the backend keeps
// variables it does not own.
func TestBackendSteps(t *testing.T) {
	for name, b := range backends(t) {
		t.Run(name, func(t *testing.T) {
			load := func() Env {
				t.Helper()
				env, err := b.Load()
				if err != nil {
					t.Fatalf("load: %v", err)
				}
				return env
			}
			want := func(step string, w Env) {
				t.Helper()
				if got := load(); !maps.Equal(got, w) {
					t.Fatalf("after %s: %v, want %v", step, got, w)
				}
			}
			if env := load(); env.Revision() != FactoryRev {
				t.Fatalf("fresh backend boots %q", env.Revision())
			}
			if err := b.Save(Env{"other": "kept"}); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Install("1"); err != nil {
				t.Fatal(err)
			}
			want("install", Env{"other": "kept", "pv_try": "1"})
			if err := b.Commit("1"); err != nil {
				t.Fatal(err)
			}
			want("commit", Env{"other": "kept", "pv_rev": "1"})
			if _, err := b.Install("2"); err != nil {
				t.Fatal(err)
			}
			want("second install", Env{"other": "kept", "pv_rev": "1", "pv_try": "2"})
			if err := b.Fail(); err != nil {
				t.Fatal(err)
			}
			want("fail", Env{"other": "kept", "pv_rev": "1"})
			for _, bad := range []string{"", "a b", "a,b", "../x"} {
				if _, err := b.Install(bad); err == nil {
					t.Errorf("install %q accepted", bad)
				}
				if err := b.Commit(bad); err == nil {
					t.Errorf("commit %q accepted", bad)
				}
			}
			want("bad revisions", Env{"other": "kept", "pv_rev": "1"})
		})
	}
}

// freshEnv writes an empty environment, as a board's first fw_setenv would
// from an empty default.
func freshEnv(t *testing.T, u UbootEnv) UbootEnv {
	t.Helper()
	if err := u.Save(Env{}); err != nil {
		t.Fatal(err)
	}
	return u
}

// parseCase is one row of a parser's table: want with no error, or an
// error holding errHas.
type parseCase struct {
	name   string
	data   []byte
	want   Env
	errHas string
}

func checkParse(t *testing.T, parse func([]byte) (Env, error), tests []parseCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parse(tt.data)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("err = %v, want %q", err, tt.errHas)
				}
				return
			}
			if err != nil || !maps.Equal(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// refusal is an env a backend must refuse to save, with an error naming
// the file and holding errHas.
type refusal struct {
	name   string
	env    Env
	errHas string
}

// checkRefusals saves each refused env with save and checks the error
// names file and the file at path is left as it was.
func checkRefusals(t *testing.T, save func(Env) error, path, file string, tests []refusal) {
	t.Helper()
	before, _ := os.ReadFile(path)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := save(tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.errHas) || !strings.Contains(err.Error(), file) {
				t.Fatalf("err = %v, want one naming %s and %q", err, file, tt.errHas)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
				t.Fatalf("refused save changed %s", file)
			}
		})
	}
}

// Confirm reads corrupt variables as none, the factory revision's, as the
// next boot does: a step is judged on them, not left unknown.
func TestConfirmReadsCorruptVariablesAsNone(t *testing.T) {
	a := AppEngine{Dir: t.TempDir()}
	if err := os.WriteFile(a.path(), []byte("not a variable\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Load(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("load: %v, want ErrCorrupt", err)
	}
	stepErr := errors.New("step")
	if err := Confirm(a, stepErr, func(e Env) bool { return e.IsCommitted(FactoryRev) }); err != nil {
		t.Errorf("factory revision committed on corrupt variables: %v, want done", err)
	}
	if err := Confirm(a, stepErr, func(e Env) bool { return e.IsCommitted("1") }); err != stepErr {
		t.Errorf("revision 1 committed on corrupt variables: %v, want the step's error alone", err)
	}
}

package bootloader

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These tests check our grubenv against grub-editenv (Debian grub-common,
// which scripts/deps.sh installs).

// grubEditenv runs grub-editenv on file.
func grubEditenv(t *testing.T, file string, args ...string) string {
	t.Helper()
	out, err := run(t, "grub-editenv", append([]string{file}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// grubList returns what grub-editenv lists. Values holding a newline are
// printed over two lines, so callers compare those another way.
func grubList(t *testing.T, file string) Env {
	t.Helper()
	env := Env{}
	for _, line := range strings.Split(strings.TrimSuffix(grubEditenv(t, file, "list"), "\n"), "\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("grub-editenv listed %q", line)
		}
		env[k] = v
	}
	return env
}

func TestGrubEditenvReadsOurs(t *testing.T) {
	needTool(t, "grub-editenv", "grub-common")
	g := Grub{Dir: t.TempDir()}
	vars := Env{"pv_rev": "3", "saved_entry": "Pantavisor 3", "cmd": `a\b "c"; d=e`, "empty": ""}
	if err := g.Save(vars); err != nil {
		t.Fatal(err)
	}
	if got := grubList(t, g.path()); !maps.Equal(got, vars) {
		t.Fatalf("grub-editenv lists %v, want %v", got, vars)
	}
	if _, err := g.Install("4"); err != nil {
		t.Fatal(err)
	}
	vars["pv_try"] = "4"
	if got := grubList(t, g.path()); !maps.Equal(got, vars) {
		t.Fatalf("after install grub-editenv lists %v", got)
	}
	if err := g.Commit("4"); err != nil {
		t.Fatal(err)
	}
	delete(vars, "pv_try")
	vars["pv_rev"] = "4"
	if got := grubList(t, g.path()); !maps.Equal(got, vars) {
		t.Fatalf("after commit grub-editenv lists %v", got)
	}
	// A value with a newline: grub-editenv prints it unescaped.
	if err := g.Save(Env{"nl": "one\ntwo"}); err != nil {
		t.Fatal(err)
	}
	if out := grubEditenv(t, g.path(), "list"); out != "nl=one\ntwo\n" {
		t.Fatalf("grub-editenv lists %q", out)
	}
	// grub-editenv can edit what we wrote: the block is one it accepts.
	grubEditenv(t, g.path(), "set", "x=1")
	if env := mustLoad(t, g); !maps.Equal(env, Env{"nl": "one\ntwo", "x": "1"}) {
		t.Fatalf("after grub-editenv set on our block: %v", env)
	}
}

func TestWeReadGrubEditenv(t *testing.T) {
	needTool(t, "grub-editenv", "grub-common")
	g := Grub{Dir: t.TempDir()}
	grubEditenv(t, g.path(), "create")
	if env := mustLoad(t, g); len(env) != 0 {
		t.Fatalf("fresh block: %v", env)
	}
	grubEditenv(t, g.path(), "set", "pv_rev=3", "saved_entry=Pantavisor 3", `cmd=a\b "c"; d=e`, "nl=one\ntwo", "empty=")
	want := Env{"pv_rev": "3", "saved_entry": "Pantavisor 3", "cmd": `a\b "c"; d=e`, "nl": "one\ntwo", "empty": ""}
	if env := mustLoad(t, g); !maps.Equal(env, want) {
		t.Fatalf("we read %v, want %v", env, want)
	}
	// Turn by turn: grub-editenv arms a try, we commit it, grub-editenv
	// unsets a variable, we install.
	grubEditenv(t, g.path(), "set", "pv_try=5")
	if env := mustLoad(t, g); env.Revision() != "5" {
		t.Fatalf("after grub-editenv set pv_try: %v", env)
	}
	if err := g.Commit("5"); err != nil {
		t.Fatal(err)
	}
	grubEditenv(t, g.path(), "unset", "saved_entry")
	if _, err := g.Install("6"); err != nil {
		t.Fatal(err)
	}
	want = Env{"pv_rev": "5", "pv_try": "6", "cmd": `a\b "c"; d=e`, "nl": "one\ntwo", "empty": ""}
	if env := mustLoad(t, g); !maps.Equal(env, want) {
		t.Fatalf("we read %v, want %v", env, want)
	}
	// grub-editenv keeps its warning comment and its order, we write
	// sorted without it: it lists the same for both blocks.
	ours := filepath.Join(t.TempDir(), "grubenv")
	if err := (Grub{Dir: filepath.Dir(ours)}).Save(want); err != nil {
		t.Fatal(err)
	}
	sorted := func(file string) string {
		lines := strings.Split(grubEditenv(t, file, "list"), "\n")
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	if a, b := sorted(ours), sorted(g.path()); a != b {
		t.Fatalf("grub-editenv lists\n%s\nfor ours and\n%s\nfor its own", a, b)
	}
	if fi, err := os.Stat(ours); err != nil || fi.Size() != GrubenvSize {
		t.Fatalf("our block: %v %v", fi, err)
	}
}

// TestGrubEditenvTooBig: a block grub-editenv filled to the last byte we
// read, and one variable more we refuse, as grub-editenv refuses it.
func TestGrubEditenvTooBig(t *testing.T) {
	needTool(t, "grub-editenv", "grub-common")
	g := Grub{Dir: t.TempDir()}
	grubEditenv(t, g.path(), "create")
	// grub-editenv's header and warning line take 95 bytes;
	// "a=" + value + "\n" fills the rest.
	data, _ := os.ReadFile(g.path())
	used := strings.LastIndexByte(string(data), '\n') + 1
	value := strings.Repeat("x", GrubenvSize-used-3)
	grubEditenv(t, g.path(), "set", "a="+value)
	env := mustLoad(t, g)
	if env["a"] != value {
		t.Fatalf("full block: %d bytes of a", len(env["a"]))
	}
	if _, err := run(t, "grub-editenv", g.path(), "set", "b=1"); err == nil {
		t.Fatal("grub-editenv grew a full block")
	}
	env["b"] = strings.Repeat("y", 100)
	if err := g.Save(env); err == nil {
		t.Fatal("we grew a full block")
	}
}

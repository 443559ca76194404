package bootloader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests check our U-Boot environments against libubootenv's
// fw_printenv and fw_setenv (Debian libubootenv-tool, which scripts/deps.sh
// installs), with an fw_env.config of their own (-c) pointing at a regular
// file.

// needTool skips the test, saying why, when a real tool is missing.
func needTool(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("%s not installed: install Debian %s (scripts/deps.sh does) to test against it", tool, pkg)
	}
}

// run runs a real tool and returns its standard output.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// fwTool is fw_printenv/fw_setenv on one environment.
type fwTool struct {
	t      *testing.T
	config string
	none   string // a default environment that does not exist
}

func newFwTool(t *testing.T, u UbootEnv) fwTool {
	t.Helper()
	needTool(t, "fw_printenv", "libubootenv-tool")
	needTool(t, "fw_setenv", "libubootenv-tool")
	dir := t.TempDir()
	var b strings.Builder
	for _, c := range u.Copies {
		fmt.Fprintf(&b, "%s %#x %#x\n", c.Device, c.Offset, c.Size)
	}
	config := filepath.Join(dir, "fw_env.config")
	if err := os.WriteFile(config, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// Parsed by us too: the config we test with is one we read right.
	if got, err := LoadFwEnvConfig(config); err != nil || fmt.Sprint(got) != fmt.Sprint(u) {
		t.Fatalf("our reading of %q: %v, %v", b.String(), got, err)
	}
	return fwTool{t: t, config: config, none: filepath.Join(dir, "no-default-env")}
}

// printenv returns what fw_printenv prints, as variables.
func (f fwTool) printenv() (Env, error) {
	f.t.Helper()
	out, err := run(f.t, "fw_printenv", "-c", f.config, "-f", f.none)
	if err != nil {
		return nil, err
	}
	env := Env{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("fw_printenv printed %q", line)
		}
		env[k] = v
	}
	return env, nil
}

func (f fwTool) mustPrintenv() Env {
	f.t.Helper()
	env, err := f.printenv()
	if err != nil {
		f.t.Fatal(err)
	}
	return env
}

// setenv runs fw_setenv; with no value it deletes the variable. An empty
// default environment lets it write the first copy of a blank device.
func (f fwTool) setenv(name string, value ...string) {
	f.t.Helper()
	empty := filepath.Join(f.t.TempDir(), "empty-default-env")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		f.t.Fatal(err)
	}
	args := append([]string{"-c", f.config, "-f", empty, name}, value...)
	if _, err := run(f.t, "fw_setenv", args...); err != nil {
		f.t.Fatal(err)
	}
}

// layouts are the environments every interop test runs on: one copy, two
// copies in one file, two copies in two files.
func layouts(t *testing.T) map[string]UbootEnv {
	t.Helper()
	two := []string{zeroFile(t, 0x2000), zeroFile(t, 0x2000)}
	return map[string]UbootEnv{
		"single":              singleEnv(zeroFile(t, 0x2000), 0x2000),
		"redundant one file":  redundantEnv(zeroFile(t, 0x4000), 0x2000),
		"redundant two files": {Copies: []EnvCopy{{Device: two[0], Size: 0x2000}, {Device: two[1], Size: 0x2000}}},
	}
}

// uBootVars are variables as a board's environment holds them: spaces,
// '=', ';' and quotes in values.
var uBootVars = Env{
	"bootcmd":  "run distro_bootcmd; run pv_boot",
	"bootargs": "console=ttyS0,115200 root=/dev/ram pv_rev=3 quiet",
	"pv_boot":  `if test -n "${pv_try}"; then echo try; fi`,
	"pv_rev":   "3",
	"empty":    "",
}

func TestFwPrintenvReadsOurs(t *testing.T) {
	for name, u := range layouts(t) {
		t.Run(name, func(t *testing.T) {
			fw := newFwTool(t, u)
			if _, err := fw.printenv(); err == nil {
				t.Fatal("fw_printenv read a blank device")
			}
			if err := u.Save(uBootVars); err != nil {
				t.Fatal(err)
			}
			want := maps.Clone(uBootVars)
			if got := fw.mustPrintenv(); !maps.Equal(got, want) {
				t.Fatalf("fw_printenv after our save: %v", got)
			}
			// Several saves: in a redundant environment each goes to the
			// other copy, and fw_printenv follows the counter.
			for _, rev := range []string{"4", "5", "6"} {
				if _, err := u.Install(rev); err != nil {
					t.Fatal(err)
				}
				want["pv_try"] = rev
				if got := fw.mustPrintenv(); !maps.Equal(got, want) {
					t.Fatalf("fw_printenv after install %s: %v", rev, got)
				}
			}
			if err := u.Commit("6"); err != nil {
				t.Fatal(err)
			}
			delete(want, "pv_try")
			want["pv_rev"] = "6"
			if got := fw.mustPrintenv(); !maps.Equal(got, want) {
				t.Fatalf("fw_printenv after commit: %v", got)
			}
		})
	}
}

func TestWeReadFwSetenv(t *testing.T) {
	for name, u := range layouts(t) {
		t.Run(name, func(t *testing.T) {
			fw := newFwTool(t, u)
			want := Env{}
			for _, k := range uBootVars.keys() {
				if uBootVars[k] == "" {
					continue // fw_setenv with no value deletes
				}
				fw.setenv(k, uBootVars[k])
				want[k] = uBootVars[k]
				if got := mustLoad(t, u); !maps.Equal(got, want) {
					t.Fatalf("after fw_setenv %s: %v, want %v", k, got, want)
				}
			}
			// Turn by turn: fw_setenv arms a try, we commit it,
			// fw_setenv deletes a variable, we install again.
			fw.setenv("pv_try", "7")
			if got := mustLoad(t, u); got.Try() != "7" || got.Revision() != "7" {
				t.Fatalf("after fw_setenv pv_try: %v", got)
			}
			if err := u.Commit("7"); err != nil {
				t.Fatal(err)
			}
			fw.setenv("bootargs")
			delete(want, "bootargs")
			want["pv_rev"] = "7"
			if got := mustLoad(t, u); !maps.Equal(got, want) {
				t.Fatalf("after fw_setenv deleting bootargs: %v, want %v", got, want)
			}
			if _, err := u.Install("8"); err != nil {
				t.Fatal(err)
			}
			want["pv_try"] = "8"
			if got := fw.mustPrintenv(); !maps.Equal(got, want) {
				t.Fatalf("fw_printenv at the end: %v, want %v", got, want)
			}
		})
	}
}

// TestRedundantTornCopyInterop: one copy of a redundant environment
// corrupted (a torn write) and both readers take the other; both copies
// corrupted and neither reads anything.
func TestRedundantTornCopyInterop(t *testing.T) {
	u := redundantEnv(zeroFile(t, 0x4000), 0x2000)
	fw := newFwTool(t, u)
	path := u.Copies[0].Device
	fw.setenv("pv_rev", "1") // copy 1, counter 1
	if err := u.Save(Env{"pv_rev": "1", "pv_try": "2"}); err != nil {
		t.Fatal(err) // copy 0, counter 2: current
	}
	good, _ := os.ReadFile(path)
	corrupt := func(raw []byte, copyAt int) {
		raw[copyAt+0x10] ^= 0x40 // in the data: the CRC no longer matches
	}
	tests := []struct {
		name    string
		corrupt []int // offsets of the copies to corrupt
		want    Env   // nil: nothing readable
	}{
		{"newest torn", []int{0}, Env{"pv_rev": "1"}},
		{"oldest torn", []int{0x2000}, Env{"pv_rev": "1", "pv_try": "2"}},
		{"both torn", []int{0, 0x2000}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := bytes.Clone(good)
			for _, at := range tt.corrupt {
				corrupt(raw, at)
			}
			if err := os.WriteFile(path, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			ours, err := u.Load()
			theirs, ferr := fw.printenv()
			if tt.want == nil {
				if !errors.Is(err, ErrNoValidCopy) {
					t.Errorf("we read %v, %v; want ErrNoValidCopy", ours, err)
				}
				if ferr == nil {
					t.Errorf("fw_printenv read %v", theirs)
				}
				return
			}
			if err != nil || !maps.Equal(ours, tt.want) {
				t.Errorf("we read %v, %v; want %v", ours, err, tt.want)
			}
			if ferr != nil || !maps.Equal(theirs, tt.want) {
				t.Errorf("fw_printenv read %v, %v; want %v", theirs, ferr, tt.want)
			}
			// Whoever writes next writes over the torn copy and keeps
			// the good one: after our save, fw_printenv reads it.
			if err := u.Save(Env{"pv_rev": "9"}); err != nil {
				t.Fatal(err)
			}
			if got := fw.mustPrintenv(); !maps.Equal(got, Env{"pv_rev": "9"}) {
				t.Errorf("fw_printenv after our save over the torn copy: %v", got)
			}
		})
	}
}

// TestCopyChoiceMatchesLibubootenv: for counters around the wrap and ties,
// we take the copy fw_printenv takes.
func TestCopyChoiceMatchesLibubootenv(t *testing.T) {
	u := redundantEnv(zeroFile(t, 0x4000), 0x2000)
	fw := newFwTool(t, u)
	path := u.Copies[0].Device
	for _, flags := range [][2]byte{{0, 0}, {1, 2}, {2, 1}, {7, 7}, {255, 0}, {0, 255}, {254, 255}, {255, 254}, {1, 255}, {128, 3}} {
		t.Run(fmt.Sprint(flags), func(t *testing.T) {
			var raw []byte
			for i, f := range flags {
				img, err := formatEnvImage(Env{"copy": fmt.Sprint(i)}, 0x2000, true)
				if err != nil {
					t.Fatal(err)
				}
				img[4] = f
				raw = append(raw, img...)
			}
			if err := os.WriteFile(path, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			ours := mustLoad(t, u)
			theirs := fw.mustPrintenv()
			if ours["copy"] != theirs["copy"] {
				t.Errorf("flags %v: we take copy %s, fw_printenv copy %s", flags, ours["copy"], theirs["copy"])
			}
		})
	}
}

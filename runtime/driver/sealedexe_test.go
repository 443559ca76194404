package driver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/exeseal"
)

// TestEnsureSealedExe re-runs this test binary; the child calls
// EnsureSealedExe, which re-executes it from a sealed memfd, and checks the
// result from the re-executed process.
func TestEnsureSealedExe(t *testing.T) {
	if os.Getenv("PV_TEST_SEALED_CHILD") == "1" {
		if err := EnsureSealedExe(); err != nil {
			t.Fatal(err)
		}
		// Only the re-executed process gets here.
		if !exeseal.IsSelfExeCloned() {
			t.Fatal("not running from a sealed copy")
		}
		if v, ok := os.LookupEnv(sealedExeEnv); ok {
			t.Fatalf("%s=%s left in the environment", sealedExeEnv, v)
		}
		ents, _ := os.ReadDir("/proc/self/fd")
		for _, e := range ents {
			if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); strings.HasPrefix(l, "/memfd:") {
				t.Errorf("memfd descriptor %s left open: %s", e.Name(), l)
			}
		}
		if err := EnsureSealedExe(); err != nil {
			t.Fatalf("second call: %v", err)
		}
		return
	}
	if exeseal.IsSelfExeCloned() {
		t.Skip("already sealed")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestEnsureSealedExe$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "PV_TEST_SEALED_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestEnsureSealedExe") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// TestPrepareExeSealing re-runs this test binary twice. With a state
// directory apart from the binary, libcontainer's overlay works and
// nothing is re-executed; with the binary's own directory, overlayfs
// refuses the overlapping layers and the process re-executes itself from
// a sealed copy.
func TestPrepareExeSealing(t *testing.T) {
	if dir := os.Getenv("PV_TEST_PREPARE_DIR"); dir != "" {
		got, err := PrepareExeSealing(dir)
		if err != nil {
			t.Fatal(err)
		}
		if want := Sealing(os.Getenv("PV_TEST_PREPARE_WANT")); got != want {
			t.Fatalf("sealing = %q, want %q", got, want)
		}
		if got == SealingMemfd && !exeseal.IsSelfExeCloned() {
			t.Fatal("memfd sealing, but not running from a sealed copy")
		}
		if _, ok := os.LookupEnv(sealedExeEnv); ok {
			t.Fatalf("%s left in the environment", sealedExeEnv)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("overlayfs needs root")
	}
	if exeseal.IsSelfExeCloned() {
		t.Skip("already sealed")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		dir  string
		want Sealing
	}{
		{t.TempDir(), SealingOverlay},
		{filepath.Dir(self), SealingMemfd},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPrepareExeSealing$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "PV_TEST_PREPARE_DIR="+tt.dir, "PV_TEST_PREPARE_WANT="+string(tt.want))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestPrepareExeSealing") {
			t.Errorf("state dir %s, want %s: %v\n%s", tt.dir, tt.want, err, out)
		}
	}
}

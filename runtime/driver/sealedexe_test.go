package driver

import (
	"os"
	"os/exec"
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

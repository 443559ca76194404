package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pantavisor/pv/internal/pvstest"
	"github.com/pantavisor/pv/signature"
)

// fixtures are upstream's states, in the repository's testdata/.
const fixtures = "../../testdata/upstream-pvtx"

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidateExitCodes(t *testing.T) {
	if _, err := os.Stat(fixtures); err != nil {
		t.Fatalf("upstream fixtures: %v", err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"#spec":"pantavisor-service-system@1",
		"device.json":{"groups":[{"name":"app","status_goal":"UP"}]},
		"web/run.json":{"name":"web","root-volume":"root.squashfs","auto_recovery":{"max_retries":-1}},
		"web/root.squashfs":"2222222222222222222222222222222222222222222222222222222222222222"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	notJSON := filepath.Join(dir, "x.json")
	if err := os.WriteFile(notJSON, []byte(`{"#spec":`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		code       int
		stderrHas  []string
		stdoutHas  string
		stderrRows int // error lines before the summary; -1 = don't count
	}{
		{"valid appengine", []string{"validate", "--appengine", fixtures + "/resources-vaultwarden.json"}, 0, nil, "valid (1 containers", -1},
		{"valid embedded", []string{"validate", fixtures + "/resources-initial_state.json"}, 0, nil, "valid (3 containers", -1},
		{"fragment without bsp, embedded", []string{"validate", fixtures + "/resources-os.json"}, 1, []string{"bsp/run.json: missing"}, "", 1},
		{"invalid", []string{"validate", "--appengine", bad}, 1, []string{
			`device.json: groups[0] ("app").status_goal: must be MOUNTED, STARTED or READY, got "UP"`,
			"web/run.json: auto_recovery.max_retries: must be >= 0",
		}, "", 2},
		{"not json", []string{"validate", notJSON}, 1, []string{"not valid JSON"}, "", 1},
		{"missing file", []string{"validate", filepath.Join(dir, "nope.json")}, 2, []string{"no such file"}, "", -1},
		{"dir that is not a trail", []string{"validate", dir}, 2, []string{"not a trail directory"}, "", -1},
		{"no path", []string{"validate"}, 2, []string{"usage"}, "", -1},
		{"unknown command", []string{"frobnicate"}, 2, []string{"unknown command"}, "", -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstderr: %s", code, tc.code, errs)
			}
			for _, s := range tc.stderrHas {
				if !strings.Contains(errs, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errs)
				}
			}
			if !strings.Contains(out, tc.stdoutHas) {
				t.Errorf("stdout lacks %q: %s", tc.stdoutHas, out)
			}
			if tc.stderrRows >= 0 {
				lines := strings.Split(strings.TrimSpace(errs), "\n")
				if len(lines)-1 != tc.stderrRows {
					t.Errorf("%d error lines, want %d:\n%s", len(lines)-1, tc.stderrRows, errs)
				}
			}
		})
	}
}

// TestValidateHashesEveryObject: validate does not trust the store's
// verified mark (mode 0444) that lets a boot skip hashing.
func TestValidateHashesEveryObject(t *testing.T) {
	storage := t.TempDir()
	trail := filepath.Join(storage, "trails", "0")
	objects := filepath.Join(storage, "objects")
	for _, d := range []string{filepath.Join(trail, ".pvr"), objects} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256([]byte("rootfs"))
	sha := hex.EncodeToString(sum[:])
	if err := os.WriteFile(filepath.Join(objects, sha), []byte("tampered"), 0o444); err != nil {
		t.Fatal(err)
	}
	st := `{"#spec":"pantavisor-service-system@1","device.json":{"groups":[{"name":"app"}]},
		"app/run.json":{"name":"app","type":"lxc","root-volume":"root.squashfs"},"app/root.squashfs":"` + sha + `"}`
	if err := os.WriteFile(filepath.Join(trail, ".pvr", "json"), []byte(st), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI("validate", "--appengine", trail)
	if code != exitInvalid || !strings.Contains(errs, "app/root.squashfs: object "+sha+" is corrupt") {
		t.Fatalf("exit %d, stderr:\n%s", code, errs)
	}
}

// validate checks signatures when asked, as a device in that mode would.
func TestValidateChecksSignatures(t *testing.T) {
	dir := t.TempDir()
	ca, key := pvstest.NewCA(t, "ca"), pvstest.Key(t)
	leaf, store := ca.Issue(t, "signer", key), ca.Store(t)
	unsigned := []byte(`{"#spec":"pantavisor-service-system@1","device.json":{"groups":[{"name":"app"}]},
		"web/run.json":{"name":"web","root-volume":"root.squashfs","group":"app"},
		"web/root.squashfs":"2222222222222222222222222222222222222222222222222222222222222222"}`)
	signed, err := signature.Sign(unsigned, "_sigs/web.json", key, []*x509.Certificate{leaf},
		[]string{"#spec", "device.json", "web/**"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"signed.json": signed, "unsigned.json": unsigned,
		"tampered.json": []byte(strings.Replace(string(signed), `"group":"app"`, `"group":"app","args":["evil"]`, 1))}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--secureboot", "strict", "--trust-store", store, "signed.json"}, 0, "valid"},
		{[]string{"--secureboot", "lenient", "--trust-store", store, "tampered.json"}, 1, "_sigs/web.json: signature validation failed"},
		{[]string{"--secureboot", "strict", "--trust-store", store, "unsigned.json"}, 1, "not covered"},
		{[]string{"--secureboot", "lenient", "--trust-store", store, "unsigned.json"}, 0, "valid"},
		{[]string{"tampered.json"}, 0, "valid"}, // not asked
		{[]string{"--secureboot", "paranoid", "signed.json"}, 2, "paranoid"},
	} {
		args := append([]string{"validate", "--appengine"}, tc.args...)
		args[len(args)-1] = filepath.Join(dir, args[len(args)-1])
		code, out, errOut := runCLI(args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s%s", tc.args, code, tc.code, tc.want, out, errOut)
		}
	}
}

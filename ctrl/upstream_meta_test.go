package ctrl

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s: got\n%s\nwant\n%s", name, got, want)
	}
}

// TestUpstreamPvcontrolInfo runs upstream's unchanged script for the
// metadata and information commands: each must exit 0 and print what the
// server answered, in the shape upstream's server gives.
func TestUpstreamPvcontrolInfo(t *testing.T) {
	needTools(t, "sh", "curl")
	sock := startServer(t, newFakeBackend(), fixedResolver("", nil))
	var transcript strings.Builder
	// record runs one command and appends it, its exit code and its
	// output to the transcript.
	record := func(args ...string) {
		t.Helper()
		code, out, errs := runPvcontrol(t, sock, args...)
		fmt.Fprintf(&transcript, "$ pvcontrol %s\n[exit %d]\n%s", strings.Join(args, " "), code, out)
		if errs != "" {
			transcript.WriteString("stderr: " + errs)
		}
	}
	for _, kind := range []string{"devmeta", "usrmeta"} {
		record(kind, "ls")
		record(kind, "save", "pantavisor.mode", "local")
		record(kind, "save", "note", "two words")
		record(kind, "ls")
		record(kind, "delete", "note")
		record(kind, "ls")
		record(kind, "delete", "note")
		record(kind, "save", "empty")
	}
	record("graph", "ls")
	record("daemons", "ls")
	record("daemons", "stop", "pv-xconnect")
	record("daemons", "restart", "pv-xconnect")
	golden(t, "upstream-pvcontrol-meta.txt", transcript.String())

	run := func(args ...string) string {
		t.Helper()
		code, out, errs := runPvcontrol(t, sock, args...)
		if code != 0 || errs != "" {
			t.Fatalf("pvcontrol %q: exit %d, stderr %q", args, code, errs)
		}
		return out
	}
	if out := run("buildinfo"); !strings.HasPrefix(out, "go\t") || !strings.Contains(out, "\npath\t") {
		t.Errorf("buildinfo printed %q", out)
	}
	var conf []map[string]string
	if err := json.Unmarshal([]byte(run("conf", "ls")), &conf); err != nil || len(conf) == 0 {
		t.Errorf("conf ls: %v, %d entries", err, len(conf))
	}
	for _, e := range conf {
		if e["key"] == "" || e["modified"] == "" {
			t.Errorf("conf ls entry %v", e)
			break
		}
	}
	var legacy map[string]any
	if err := json.Unmarshal([]byte(run("config", "ls")), &legacy); err != nil || legacy["log.level"] == nil {
		t.Errorf("config ls: %v, log.level %v", err, legacy["log.level"])
	}
}

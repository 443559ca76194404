package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/pantavisor/pv/ctrl"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

func TestCmd(t *testing.T) {
	b := &fakeBackend{}
	sock := startCtrlWith(t, b, "",
		&ctrl.Storage{Layout: storage.Layout{Root: t.TempDir()}, State: state.Options{AppEngine: true}})
	cases := []struct {
		args    []string
		code    int
		stderr  string // contained; "" for none
		command string // what the backend was asked, "" for nothing
	}{
		{[]string{"cmd", "run", "locals/foo"}, exitOK, "", "run locals/foo commit=false"},
		{[]string{"cmd", "run-commit", "locals/foo"}, exitOK, "", "run locals/foo commit=true"},
		{[]string{"cmd", "reboot"}, exitOK, "", "power poweroff=false "},
		{[]string{"cmd", "reboot", "new kernel"}, exitOK, "", "power poweroff=false new kernel"},
		{[]string{"cmd", "poweroff", "bye"}, exitOK, "", "power poweroff=true bye"},
		// This server was given no way to re-execute (no PID 1 of ours).
		{[]string{"cmd", "reexec"}, exitFailed, "(HTTP 501)", ""},
		// The fake runs "0": nothing to copy, "0" is run with a reboot.
		{[]string{"cmd", "make-factory"}, exitOK, "", "run 0 commit=true"},
		{[]string{"cmd", "make-factory", "locals/none"}, exitFailed, "Resource does not exist (HTTP 404)", ""},
		{[]string{"cmd", "run-gc"}, exitOK, "", ""},
		{[]string{"cmd", "run", "locals/missing"}, exitFailed, "Resource does not exist (HTTP 404)", ""},
		{[]string{"cmd", "go-remote"}, exitFailed, "GO_REMOTE: remote mode is not supported (HTTP 409)", ""},
		{[]string{"cmd", "unclaim"}, exitFailed, "UNCLAIM: the device is not claimed: there is no hub (HTTP 409)", ""},
		{[]string{"cmd", "defer-reboot", "60"}, exitFailed, "(HTTP 409)", ""},
		{[]string{"cmd", "enable-ssh"}, exitFailed, "(HTTP 501)", ""},
		{[]string{"cmd", "disable-ssh"}, exitFailed, "(HTTP 501)", ""},
		{[]string{"cmd", "run"}, exitUsage, "usage: pvcontrol cmd run REV", ""},
		{[]string{"cmd", "run-gc", "now"}, exitUsage, "wrong number of arguments", ""},
		{[]string{"cmd", "reboot", "a", "b"}, exitUsage, "wrong number of arguments", ""},
		{[]string{"cmd", "self-destruct"}, exitUsage, "unknown command", ""},
	}
	for _, c := range cases {
		before := len(b.commandLog())
		code, out, errs := runCmd(append([]string{"-s", sock}, c.args...)...)
		if code != c.code || out != "" || (c.stderr == "") != (errs == "") || !strings.Contains(errs, c.stderr) {
			t.Errorf("pvcontrol %q = %d stdout %q stderr %q, want %d %q", c.args, code, out, errs, c.code, c.stderr)
		}
		var want []string
		if c.command != "" {
			want = []string{c.command}
		}
		if got := b.commandLog()[before:]; !slices.Equal(got, want) {
			t.Errorf("pvcontrol %q: backend asked %q, want %q", c.args, got, want)
		}
	}
}

// TestStorageGCPrintsReclaimed: `storage gc` prints the server's answer to
// POST /storage/gc, the bytes freed, as upstream's script does.
func TestStorageGCPrintsReclaimed(t *testing.T) {
	sock := startCtrlStorage(t)
	orphan := "orphan data\n" // in no revision: GC frees its 12 bytes
	if code, _, errs := runCmd("-s", sock, "objects", "put", writeFile(t, t.TempDir(), "obj", orphan)); code != 0 {
		t.Fatalf("objects put: %d %s", code, errs)
	}
	for _, want := range []string{`{"reclaimed":12}` + "\n", `{"reclaimed":0}` + "\n"} {
		if code, out, errs := runCmd("-s", sock, "storage", "gc"); code != exitOK || out != want || errs != "" {
			t.Errorf("storage gc = %d stdout %q stderr %q, want 0 %q", code, out, errs, want)
		}
	}
}

package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestObjectsGet: upstream's `objects get SHA` (GET /objects/SHA,
// reference §8.1) prints the object; with -f OUT it writes it to OUT.
func TestObjectsGet(t *testing.T) {
	sock := startCtrlStorage(t)
	dir := t.TempDir()
	content := "object content\n"
	if code, _, errs := runCmd("-s", sock, "objects", "put", writeFile(t, dir, "obj", content)); code != 0 {
		t.Fatalf("objects put: %d %s", code, errs)
	}
	sha := hexSHA(content)
	if code, out, errs := runCmd("-s", sock, "objects", "get", sha); code != 0 || out != content || errs != "" {
		t.Errorf("objects get = %d stdout %q stderr %q; want 0 and the object", code, out, errs)
	}
	dst := filepath.Join(dir, "out")
	code, out, errs := runCmd("-s", sock, "-f", dst, "objects", "get", sha)
	if b, _ := os.ReadFile(dst); code != 0 || string(b) != content || out != "" {
		t.Errorf("-f OUT objects get = %d, file %q, stdout %q, stderr %q; want 0 and the object in OUT", code, b, out, errs)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("OUT: %v, %v; want mode 0644", fi, err)
	}
	// An object the device does not hold: upstream's 400, said plainly.
	absent := hexSHA("never uploaded")
	code, out, errs = runCmd("-s", sock, "objects", "get", absent)
	if want := "pvcontrol: object " + absent + " is not on the device (Request has bad object name, HTTP 400)\n"; code != exitFailed || out != "" || errs != want {
		t.Errorf("objects get of an absent object = %d stdout %q stderr %q; want %d and %q", code, out, errs, exitFailed, want)
	}
	onlyFiles(t, dir, "obj", "out")
}

// TestOutputFileWholeOrNothing: with -f, FILE is written only when the
// command succeeded and the whole answer came: a failed command, a body
// cut short or not the object named leave no FILE (or the old one), and
// no temporary file.
func TestOutputFileWholeOrNothing(t *testing.T) {
	content := "0123456789"
	sha := hexSHA(content)
	stub := startStub(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/objects/" + sha: // cut: 10 of the 100 bytes announced
			w.Header().Set("Content-Length", "100")
			w.Write([]byte(content))
		case "/objects/" + hexSHA("other"): // whole, but not the object named
			w.Header().Set("Content-Length", "10")
			w.Write([]byte(content))
		default:
			http.Error(w, `{"Error":"Request has bad object name"}`, http.StatusBadRequest)
		}
	})
	dir := t.TempDir()
	old := writeFile(t, dir, "old", "the previous content")
	cases := []struct {
		name string
		args []string
		out  string
		code int
		err  string // contained
	}{
		{"cut short", []string{"objects", "get", sha}, "new", exitFailed, "ended after 10 of 100 bytes: unexpected EOF"},
		{"cut short, FILE existed", []string{"objects", "get", sha}, old, exitFailed, "unexpected EOF"},
		{"another object", []string{"objects", "get", hexSHA("other")}, "new", exitBadChecksum, "the 10 bytes received hash to " + sha},
		{"absent", []string{"objects", "get", hexSHA("absent")}, "new", exitFailed, "is not on the device"},
		{"server unreachable", []string{"-s", filepath.Join(dir, "nosock"), "ls"}, "new", exitFailed, "cannot reach control socket"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := c.out
			if out == "new" {
				out = filepath.Join(dir, "new")
			}
			code, stdout, errs := runCmd(append([]string{"-s", stub, "-f", out}, c.args...)...)
			if code != c.code || stdout != "" || !strings.Contains(errs, c.err) {
				t.Errorf("pvcontrol -f %q = %d stdout %q stderr %q; want %d and %q", c.args, code, stdout, errs, c.code, c.err)
			}
			onlyFiles(t, dir, "old")
			if b, _ := os.ReadFile(old); string(b) != "the previous content" {
				t.Errorf("the existing FILE was changed: %q", b)
			}
		})
	}
}

// TestOutputFileAnyCommand: -f takes any command's output, as upstream's
// script sends its whole stdout there, and keeps an existing file's mode.
func TestOutputFileAnyCommand(t *testing.T) {
	sock := startCtrl(t, &fakeBackend{}, "")
	dir := t.TempDir()
	out := writeFile(t, dir, "ls.out", "old")
	if err := os.Chmod(out, 0o600); err != nil {
		t.Fatal(err)
	}
	_, want, _ := runCmd("-s", sock, "ls")
	code, stdout, errs := runCmd("-s", sock, "ls", "-f", out)
	b, _ := os.ReadFile(out)
	if code != 0 || stdout != "" || errs != "" || string(b) != want || !strings.HasPrefix(want, "NAME") {
		t.Errorf("ls -f OUT = %d stdout %q stderr %q, file %q; want 0 and the table %q in the file", code, stdout, errs, b, want)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("OUT: %v, %v; want its mode 0600 kept", fi, err)
	}
	onlyFiles(t, dir, "ls.out")
}

// onlyFiles fails the test unless dir holds exactly names: no temporary
// file left behind.
func onlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

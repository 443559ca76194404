package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/ctrl"
	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

// startCtrlStorage serves a real ctrl.Server, called by the host, with an
// empty storage in a temporary directory.
func startCtrlStorage(t *testing.T) string {
	t.Helper()
	return startCtrlWith(t, &fakeBackend{}, "",
		&ctrl.Storage{Layout: storage.Layout{Root: t.TempDir()}, State: state.Options{AppEngine: true}})
}

func hexSHA(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestObjectsAndSteps(t *testing.T) {
	sock := startCtrlStorage(t)
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	conf, root := write("conf", "lxc conf\n"), write("root", "root image")
	st := `{"#spec":"pantavisor-service-system@1",` +
		`"web/run.json":{"#spec":"service-manifest-run@1","name":"web","type":"lxc",` +
		`"config":"lxc.container.conf","root-volume":"root.squashfs","volumes":[],` +
		`"storage":{"lxc-overlay":{"persistence":"boot"}}},` +
		`"web/lxc.container.conf":"` + hexSHA("lxc conf\n") + `","web/root.squashfs":"` + hexSHA("root image") + `"}`
	stateFile := write("state.json", st)

	steps := []struct {
		args   []string
		code   int
		stdout string // exact, when set
		stderr string // contained, when set
	}{
		{[]string{"steps", "put", stateFile, "locals/one"}, exitFailed, "", hexSHA("root image")},
		{[]string{"objects", "put", conf}, exitOK, hexSHA("lxc conf\n") + "\n", ""},
		{[]string{"objects", "put", root, hexSHA("root image")}, exitOK, hexSHA("root image") + "\n", ""},
		{[]string{"objects", "put", root, hexSHA("other")}, exitBadChecksum, "", "Object has bad checksum (HTTP 422)"},
		{[]string{"objects", "ls"}, exitOK, "SHA256" + strings.Repeat(" ", 60) + "SIZE\n" + objectRows(), ""},
		{[]string{"steps", "put", stateFile, "one"}, exitUsage, "", "only local revisions"},
		{[]string{"steps", "put", stateFile, "locals/one"}, exitOK, "", ""},
		{[]string{"steps", "get", "locals/one"}, exitOK, st + "\n", ""},
		{[]string{"steps", "show-progress", "locals/one"}, exitOK, "", ""},
		{[]string{"steps", "get", "locals/none"}, exitFailed, "", "Resource does not exist (HTTP 404)"},
	}
	for _, s := range steps {
		code, out, errs := runCmd(append([]string{"-s", sock}, s.args...)...)
		if code != s.code || (s.stdout != "" && !strings.HasPrefix(out, s.stdout)) || (s.stderr != "" && !strings.Contains(errs, s.stderr)) {
			t.Errorf("pvcontrol %q = %d\nstdout %q\nstderr %q\nwant %d %q %q", s.args, code, out, errs, s.code, s.stdout, s.stderr)
		}
	}
	code, out, _ := runCmd("-s", sock, "steps", "show-progress", "locals/one")
	if code != 0 || !strings.Contains(out, `"status-msg":"Update ready to be run"`) {
		t.Errorf("progress = %d %s", code, out)
	}
	code, out, _ = runCmd("-s", sock, "steps", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "REV ") ||
		strings.Join(strings.Fields(lines[1])[2:], " ") != "NEW Update ready to be run -" {
		t.Errorf("steps ls = %d\n%s", code, out)
	}
}

// objectRows is the objects ls table body for the test's two objects,
// listed by name.
func objectRows() string {
	conf, root := hexSHA("lxc conf\n")+"  9", hexSHA("root image")+"  10"
	if conf > root {
		conf, root = root, conf
	}
	return conf + "\n" + root + "\n"
}

// writeTarball writes a gzipped tarball of files (name → content).
func writeTarball(t *testing.T, p string, files [][2]string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	for _, fl := range files {
		if err := tw.WriteHeader(&tar.Header{Name: fl[0], Mode: 0o644, Size: int64(len(fl[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(fl[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestStepsInstall(t *testing.T) {
	sock := startCtrlStorage(t)
	dir := t.TempDir()
	st := `{"#spec":"pantavisor-service-system@1",` +
		`"web/run.json":{"#spec":"service-manifest-run@1","name":"web","type":"lxc",` +
		`"config":"lxc.container.conf","root-volume":"root.squashfs","volumes":[],` +
		`"storage":{"lxc-overlay":{"persistence":"boot"}}},` +
		`"web/lxc.container.conf":"` + hexSHA("conf") + `","web/root.squashfs":"` + hexSHA("root") + `"}`
	// One object is on the device already: only the other is sent.
	if code, _, errs := runCmd("-s", sock, "objects", "put", writeFile(t, dir, "conf", "conf")); code != 0 {
		t.Fatalf("objects put: %s", errs)
	}
	tgz := filepath.Join(dir, "update.tgz")
	writeTarball(t, tgz, [][2]string{
		{"objects/" + hexSHA("conf"), "conf"}, {"objects/" + hexSHA("root"), "root"}, {"json", st}})
	sha, err := fileSHA(tgz)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"revision":"locals/` + sha + `"}` + "\n"
	for i := 0; i < 2; i++ { // the second time the revision exists: left as it is
		code, out, errs := runCmd("-s", sock, "-m", "from a tarball", "steps", "install", tgz)
		if code != 0 || out != want {
			t.Fatalf("steps install #%d = %d %q %s", i+1, code, out, errs)
		}
	}
	code, out, _ := runCmd("-s", sock, "--json", "steps", "ls")
	if code != 0 || !strings.Contains(out, `"commitmsg": "from a tarball"`) || !strings.Contains(out, `"Update ready to be run"`) {
		t.Errorf("steps ls = %d %s", code, out)
	}
	if code, out, _ := runCmd("-s", sock, "steps", "get", "locals/"+sha); code != 0 || out != st+"\n" {
		t.Errorf("steps get = %d %s", code, out)
	}

	// A named revision; a tarball without json.
	if code, out, errs := runCmd("-s", sock, "steps", "install", tgz, "locals/named"); code != 0 || out != `{"revision":"locals/named"}`+"\n" {
		t.Errorf("steps install named = %d %q %s", code, out, errs)
	}
	bad := filepath.Join(dir, "bad.tgz")
	writeTarball(t, bad, [][2]string{{"objects/" + hexSHA("root"), "root"}})
	if code, _, errs := runCmd("-s", sock, "steps", "install", bad); code != exitFailed || !strings.Contains(errs, "has no json") {
		t.Errorf("tarball without json = %d %s", code, errs)
	}
}

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStepsInstallCutTarball: a tarball cut short (an interrupted
// download) fails steps install at once, saying so, rather than after the
// server's 30 s body timeout with the server's 500.
func TestStepsInstallCutTarball(t *testing.T) {
	sock := startCtrlStorage(t)
	dir := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	st := `{"#spec":"pantavisor-service-system@1"}`
	full := filepath.Join(dir, "full.tar")
	// Uncompressed, so that the cut is in the object's bytes.
	writeTarball(t, full+".gz", [][2]string{{"json", st}, {"objects/" + hexSHA(string(big)), string(big)}})
	f, err := os.Open(full + ".gz")
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cut := filepath.Join(dir, "cut.tar")
	if err := os.WriteFile(cut, raw.Bytes()[:raw.Len()/2], 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, _, errs := runCmd("-s", sock, "steps", "install", cut, "locals/cut")
	took := time.Since(start)
	if code != exitFailed {
		t.Fatalf("a cut tarball installed: exit %d, stderr %q", code, errs)
	}
	if !strings.Contains(errs, "pvcontrol: read "+cut+": unexpected EOF\n") {
		t.Errorf("the error does not say the tarball is cut short (unexpected EOF): %q", errs)
	}
	if took > 10*time.Second {
		t.Errorf("took %v to fail on a local read error", took)
	}
	if code, out, _ := runCmd("-s", sock, "objects", "ls"); code != 0 || strings.Count(out, "\n") != 1 {
		t.Errorf("objects after the cut upload = %d\n%s; want none", code, out)
	}
}

// runWithStdin is runCmd with stdin fed data through a pipe.
func runWithStdin(t *testing.T, data string, args ...string) (int, string, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() { w.WriteString(data); w.Close() }()
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old }()
	return runCmd(args...)
}

// TestObjectsPutStdin: upstream's `objects put -SIZE SHA` uploads SIZE
// bytes read from stdin (put_object: "-T -" with "Content-Length: SIZE").
func TestObjectsPutStdin(t *testing.T) {
	sock := startCtrlStorage(t)
	data := "streamed from a pipe\n"
	size := "-" + strconv.Itoa(len(data))
	cases := []struct {
		name, stdin string
		args        []string
		code        int
		stdout      string
		stderr      string // contained; "" for none
	}{
		{"whole", data, []string{size, hexSHA(data)}, exitOK, hexSHA(data) + "\n", ""},
		{"SIZE bytes of a longer stdin", data + "and more", []string{"-6", hexSHA(data[:6])}, exitOK, hexSHA(data[:6]) + "\n", ""},
		{"short stdin", data[:5], []string{size, hexSHA(data)}, exitFailed, "",
			"pvcontrol: read stdin: ended after 5 of 21 bytes: unexpected EOF\n"},
		{"no SHA", data, []string{size}, exitUsage, "", "give the object's SHA256"},
		{"size out of range", data, []string{"-99999999999999999999", hexSHA(data)}, exitUsage, "", "value out of range"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := runWithStdin(t, c.stdin, append([]string{"-s", sock, "objects", "put"}, c.args...)...)
			if code != c.code || out != c.stdout || (c.stderr == "") != (errs == "") || !strings.Contains(errs, c.stderr) {
				t.Errorf("objects put %q < %q = %d stdout %q stderr %q, want %d %q %q", c.args, c.stdin, code, out, errs, c.code, c.stdout, c.stderr)
			}
		})
	}
	code, out, _ := runCmd("-s", sock, "objects", "ls")
	if code != 0 || !containsRow(out, hexSHA(data), strconv.Itoa(len(data))) || !containsRow(out, hexSHA(data[:6]), "6") || strings.Count(out, "\n") != 3 {
		t.Errorf("objects ls = %d\n%s", code, out)
	}
}

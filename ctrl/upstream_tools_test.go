package ctrl

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pantavisor/pv/internal/revtest"
	"github.com/pantavisor/pv/storage"
)

// upstreamPvcontrol is upstream Pantavisor's own pvcontrol script, kept
// unchanged (testdata/upstream-tools/README.md).
const upstreamPvcontrol = "../testdata/upstream-tools/pvcontrol"

// pvrVersion is the upstream pvr whose `pvr export` the tarballs follow.
const pvrVersion = "gitlab.com/pantacor/pvr@v0.0.0-20260922150918-f2e31aab1231"

// needTools skips the test when a program upstream's script relies on is
// missing.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: upstream's pvcontrol script cannot run (scripts/deps.sh installs curl)", tool)
		}
	}
}

// runPvcontrol runs upstream's script against sock, as a management
// container would: `sh pvcontrol -s SOCK args...`. It returns the exit
// code, stdout and stderr.
func runPvcontrol(t *testing.T, sock string, args ...string) (int, string, string) {
	t.Helper()
	script, err := filepath.Abs(upstreamPvcontrol)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", append([]string{script, "-s", sock}, args...)...)
	// The script would hand over to PVTEST_EXEC, and prefers a pvcurl
	// when one is in PATH: plain curl, whatever the environment.
	env := []string{"CURL_CMD=curl"}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PVTEST_EXEC=") && !strings.HasPrefix(e, "CURL_CMD=") && !strings.HasPrefix(e, "CURL_ARGS=") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("pvcontrol %q: %v", args, err)
	return 0, "", ""
}

// revisionFiles is a small revision as it sits in a pvr checkout: the
// .json files go into the state, the others become objects.
func revisionFiles(t *testing.T) map[string][]byte {
	t.Helper()
	root := make([]byte, 1<<20)
	if _, err := rand.Read(root); err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"web/run.json": []byte(`{"#spec":"service-manifest-run@1","name":"web","type":"lxc",` +
			`"config":"lxc.container.conf","root-volume":"root.squashfs","volumes":[],` +
			`"storage":{"lxc-overlay":{"persistence":"boot"}}}`),
		"web/lxc.container.conf": []byte("lxc.uts.name = web\n"),
		"web/root.squashfs":      root,
	}
}

// pvrExportLayout writes to tgz what `pvr export tgz` writes for a checkout
// holding files (libpvr's Pvr.Export, pvr at pvrVersion): a gzip'd tar
// without directory entries whose first member is "json", the state in
// canonical JSON (sorted keys, no blanks; .json files inlined, every other
// file by its sha256), then "objects/<sha256>" for each object, sorted and
// once each, all dated the epoch. It returns the state and the objects by
// sha.
func pvrExportLayout(t *testing.T, tgz string, files map[string][]byte) ([]byte, map[string][]byte) {
	t.Helper()
	st := map[string]any{"#spec": "pantavisor-service-system@1"}
	objects := map[string][]byte{}
	for name, data := range files {
		if strings.HasSuffix(name, ".json") {
			st[name] = json.RawMessage(data)
			continue
		}
		sha := shaOf(string(data))
		st[name] = sha
		objects[sha] = data
	}
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(st); err != nil {
		t.Fatal(err)
	}
	stateJSON := bytes.TrimSuffix(js.Bytes(), []byte("\n"))

	if err := revtest.WriteExport(tgz, stateJSON, objects); err != nil {
		t.Fatal(err)
	}
	return stateJSON, objects
}

// findPvr is upstream's pvr from PATH or from where `go install` puts it.
func findPvr() string {
	if p, err := exec.LookPath("pvr"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "pvr")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// pvrExport makes tgz with upstream's pvr itself: `pvr init`, the files,
// `pvr add`, `pvr commit`, `pvr export tgz`, all offline in a scratch home.
// It returns the state and the objects read back from the tarball.
func pvrExport(t *testing.T, pvr, tgz string, files map[string][]byte) ([]byte, map[string][]byte) {
	t.Helper()
	home := t.TempDir()
	dir := filepath.Join(home, "checkout")
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init"}, {"add"}, {"commit", "-m", "upstream tools test"}, {"export", tgz}} {
		cmd := exec.Command(pvr, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+home, "PVR_CONFIG_DIR="+filepath.Join(home, ".pvr"),
			"PVR_DISABLE_SELF_UPGRADE=true")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pvr %q: %v\n%s", args, err, out)
		}
	}
	return readExport(t, tgz)
}

// readExport reads a `pvr export` tarball back: its state and its objects.
func readExport(t *testing.T, tgz string) ([]byte, map[string][]byte) {
	t.Helper()
	f, err := os.Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var stateJSON []byte
	objects := map[string][]byte{}
	for first := true; ; first = false {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case hdr.Name == "json":
			if !first {
				t.Errorf("%s: json is not the first member", tgz)
			}
			stateJSON = data
		case strings.HasPrefix(hdr.Name, "objects/"):
			objects[strings.TrimPrefix(hdr.Name, "objects/")] = data
		default:
			t.Errorf("%s: unexpected member %q", tgz, hdr.Name)
		}
	}
	if stateJSON == nil {
		t.Fatalf("%s: no json member", tgz)
	}
	return stateJSON, objects
}

// TestUpstreamPvcontrol drives a storage-backed server with upstream's
// unchanged pvcontrol script: a local update as upstream documents it
// (`pvcontrol steps install rev.tgz locals/NAME` with a tarball laid out as
// `pvr export` makes it), then the read-back commands, the object commands
// and their exit codes. Running the revision (`pvcontrol cmd run`) needs
// POST /commands, not served here.
func TestUpstreamPvcontrol(t *testing.T) {
	needTools(t, "sh", "curl", "tar", "gzip", "sha256sum", "mktemp")
	t.Run("export-layout", func(t *testing.T) {
		tgz := filepath.Join(t.TempDir(), "rev.tgz")
		stateJSON, objects := pvrExportLayout(t, tgz, revisionFiles(t))
		if gotState, gotObjects := readExport(t, tgz); !bytes.Equal(gotState, stateJSON) || len(gotObjects) != len(objects) {
			t.Fatalf("tarball reads back as %s with %d objects", gotState, len(gotObjects))
		}
		checkLocalUpdate(t, tgz, stateJSON, objects)
	})
	t.Run("pvr-export", func(t *testing.T) {
		pvr := findPvr()
		if pvr == "" {
			t.Skipf("upstream's pvr not installed (in PATH or $GOPATH/bin): %s does not build from the Go module proxy "+
				"(its replaced modules github.com/asac/go-jose/v3 and gitlab.com/pantacor/pantahub-base are not on it); "+
				"the export-layout case covers the same tarball layout", pvrVersion)
		}
		tgz := filepath.Join(t.TempDir(), "rev.tgz")
		stateJSON, objects := pvrExport(t, pvr, tgz, revisionFiles(t))
		checkLocalUpdate(t, tgz, stateJSON, objects)
	})
}

// checkLocalUpdate installs tgz as locals/upstream with upstream's script
// on a fresh server and checks what the script prints and what storage
// holds.
func checkLocalUpdate(t *testing.T, tgz string, stateJSON []byte, objects map[string][]byte) {
	t.Helper()
	st := newStorage(t)
	sock := startServerWith(t, newFakeBackend(), fixedResolver("", nil), st)
	const rev = "locals/upstream"
	pvc := func(wantCode int, args ...string) string {
		t.Helper()
		code, out, errOut := runPvcontrol(t, sock, args...)
		if code != wantCode {
			t.Fatalf("pvcontrol %q: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, wantCode, out, errOut)
		}
		if wantCode == 0 {
			return out
		}
		return errOut
	}

	// steps install uploads the objects the device lacks, then the state.
	// The script ignores the answers to both and always exits 0: storage
	// tells whether it worked.
	if out := pvc(0, "steps", "install", tgz, rev); out != `{"revision":"`+rev+`"}`+"\n" {
		t.Errorf("steps install printed %q", out)
	}
	for sha := range objects {
		if _, err := os.Stat(st.Layout.Object(sha)); err != nil {
			t.Errorf("object %s not stored: %v", sha, err)
		}
	}
	if err := st.Layout.CheckTrail(rev); err != nil {
		t.Errorf("CheckTrail(%s): %v", rev, err)
	}
	if err := st.Layout.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
	if got, err := st.Layout.ReadState(rev); err != nil || !bytes.Equal(got, stateJSON) {
		t.Errorf("stored state = %q, %v; want the tarball's json", got, err)
	}
	// Again: everything is on the device already, nothing is sent.
	pvc(0, "steps", "install", tgz, rev)

	out := pvc(0, "steps", "show-progress", rev)
	var progress storage.Progress
	if err := json.Unmarshal([]byte(out), &progress); err != nil {
		t.Fatalf("show-progress printed %q: %v", out, err)
	}
	if !strings.Contains(out, `"status":"NEW"`) || !strings.Contains(out, `"status-msg":"Update ready to be run"`) ||
		!strings.Contains(out, `"progress":0`) {
		t.Errorf("show-progress printed %q", out)
	}
	if out := pvc(0, "steps", "get", rev); out != string(stateJSON)+"\n" {
		t.Errorf("steps get printed %q, want the tarball's json", out)
	}
	if err := st.Layout.SetCurrent(rev); err != nil {
		t.Fatal(err)
	}
	if out := pvc(0, "steps", "get", "current"); out != string(stateJSON)+"\n" {
		t.Errorf("steps get current printed %q, want the tarball's json", out)
	}
	if out := pvc(0, "steps", "ls"); !strings.Contains(out, `"name":"`+rev+`"`) {
		t.Errorf("steps ls printed %q", out)
	}
	out = pvc(0, "objects", "ls")
	for sha := range objects {
		if !strings.Contains(out, `"sha256":"`+sha+`"`) {
			t.Errorf("objects ls lacks %s: %q", sha, out)
		}
	}
	dir := t.TempDir()
	for sha, data := range objects {
		got := filepath.Join(dir, sha)
		pvc(0, "-f", got, "objects", "get", sha)
		if b, err := os.ReadFile(got); err != nil || !bytes.Equal(b, data) {
			t.Errorf("objects get %s: read back differs (%v)", sha, err)
		}
	}

	// objects put: a body that does not hash to its name is refused with
	// upstream's message, which the script turns into exit code 60.
	file := filepath.Join(dir, "new-object")
	if err := os.WriteFile(file, []byte("a new object\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if errOut := pvc(60, "objects", "put", file, shaOf("something else")); errOut != errJSON(msgBadChecksum)+"\n" {
		t.Errorf("bad checksum: stderr %q", errOut)
	}
	if _, err := os.Stat(st.Layout.Object(shaOf("something else"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("object with a bad checksum stored (%v)", err)
	}
	pvc(0, "objects", "put", file, shaOf("a new object\n"))
	if err := st.Layout.Verify(shaOf("a new object\n")); err != nil {
		t.Errorf("object put: %v", err)
	}
	if err := st.Layout.Check(); err != nil {
		t.Errorf("Check at the end: %v", err)
	}
	// A revision nobody installed: upstream's 404, exit code 255.
	pvc(255, "steps", "get", "locals/none")
}

// TestUpstreamStorageGCReportsReclaimed: upstream's POST /storage/gc
// (ctrl/ctrl_storage_ep.c, ctrl_storage_gc) answers 200 application/json
// {"reclaimed": N}, the bytes GC freed, and upstream's `pvcontrol storage
// gc` prints that answer.
func TestUpstreamStorageGCReportsReclaimed(t *testing.T) {
	needTools(t, "sh", "curl")
	st := newStorage(t)
	sock := startServerWith(t, newFakeBackend(), fixedResolver("", nil), st)
	// An object no revision refers to: GC frees its 12 bytes.
	orphan := "orphan data\n"
	file := filepath.Join(t.TempDir(), "obj")
	if err := os.WriteFile(file, []byte(orphan), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runPvcontrol(t, sock, "objects", "put", file, shaOf(orphan)); code != 0 {
		t.Fatalf("objects put: %d %q %q", code, out, errOut)
	}
	code, out, errOut := runPvcontrol(t, sock, "storage", "gc")
	var got struct {
		Reclaimed *int64 `json:"reclaimed"`
	}
	if code != 0 || json.Unmarshal([]byte(strings.TrimSpace(out)), &got) != nil || got.Reclaimed == nil || *got.Reclaimed != int64(len(orphan)) {
		t.Errorf("upstream pvcontrol storage gc = exit %d, stdout %q, stderr %q; want 0 and {\"reclaimed\": %d}",
			code, out, errOut, len(orphan))
	}
	if err := st.Layout.Verify(shaOf(orphan)); err == nil {
		t.Error("the orphan object is still stored after GC")
	}
	// Nothing left to free: 0, still an answer.
	if code, out, _ := runPvcontrol(t, sock, "storage", "gc"); code != 0 || strings.TrimSpace(out) != `{"reclaimed":0}` {
		t.Errorf("second storage gc = exit %d, stdout %q; want 0 and {\"reclaimed\":0}", code, out)
	}
}

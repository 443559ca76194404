package ctrl

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/state"
	"github.com/pantavisor/pv/storage"
)

func shaOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// shaX names the object "x".
var shaX = shaOf("x")

// stateWith is a valid appengine state whose container's files are the
// objects named conf and root.
func stateWith(conf, root string) string {
	return `{"#spec":"pantavisor-service-system@1",` +
		`"web/run.json":{"#spec":"service-manifest-run@1","name":"web","type":"lxc",` +
		`"config":"lxc.container.conf","root-volume":"root.squashfs","volumes":[],` +
		`"storage":{"lxc-overlay":{"persistence":"boot"}}},` +
		`"web/lxc.container.conf":"` + conf + `","web/root.squashfs":"` + root + `"}`
}

// permState is a valid state needing only the object "x".
var permState = stateWith(shaX, shaX)

// newStorage is an empty storage in a temporary directory.
func newStorage(t *testing.T) *Storage {
	return &Storage{Layout: storage.Layout{Root: t.TempDir()}, State: state.Options{AppEngine: true}}
}

// files lists the regular files and symlinks under dir, relative to it;
// nothing when dir does not exist.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

func TestObjects(t *testing.T) {
	st := newStorage(t)
	client := unixClient(startServerWith(t, newFakeBackend(), fixedResolver("", nil), st))
	shaY := shaOf("y")
	cases := []struct {
		name, method, path, body string
		status                   int
		want                     string // exact body, when set
	}{
		{"empty list", "GET", "/objects", "", 200, `[]`},
		{"put", "PUT", "/objects/" + shaX, "x", 200, ""},
		{"put again", "PUT", "/objects/" + shaX, "x", 200, ""},
		{"put existing, other body drained", "PUT", "/objects/" + shaX, strings.Repeat("z", 100000), 200, ""},
		{"list", "GET", "/objects", "", 200, `[{"sha256":"` + shaX + `","size":"1"}]`},
		{"get", "GET", "/objects/" + shaX, "", 200, "x"},
		{"bad checksum", "PUT", "/objects/" + shaY, "x", 422, errJSON(msgBadChecksum)},
		{"bad checksum not stored", "GET", "/objects/" + shaY, "", 400, errJSON(msgBadObjectName)},
		{"short name", "PUT", "/objects/abc", "x", 400, errJSON(msgBadObjectName)},
		{"upper-case name", "PUT", "/objects/" + strings.ToUpper(shaX), "x", 400, errJSON(msgBadObjectName)},
		{"get bad name", "GET", "/objects/abc", "", 400, errJSON(msgBadObjectName)},
		// Upstream's ctrl_objects_send answers an object the device does
		// not hold as a bad name.
		{"get missing", "GET", "/objects/" + shaOf("missing"), "", 400, errJSON(msgBadObjectName)},
		{"list unchanged", "GET", "/objects", "", 200, `[{"sha256":"` + shaX + `","size":"1"}]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := do(t, client, c.method, c.path, c.body)
			if got.status != c.status || (c.want != "" && got.body != c.want) {
				t.Fatalf("%s %s = %d %q, want %d %q", c.method, c.path, got.status, got.body, c.status, c.want)
			}
		})
	}
	// The bad checksum left nothing behind, not even a temporary file.
	if fs := files(t, st.Layout.Objects()); len(fs) != 1 || fs[0] != shaX {
		t.Errorf("objects/ holds %q, want only %s", fs, shaX)
	}
	if got := do(t, client, "GET", "/objects/"+shaX, ""); got.header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("object Content-Type %q", got.header.Get("Content-Type"))
	}
}

func TestObjectTooLarge(t *testing.T) {
	st := newStorage(t)
	st.MaxObject = 4
	client := unixClient(startServerWith(t, newFakeBackend(), fixedResolver("", nil), st))
	if got := do(t, client, "PUT", "/objects/"+shaOf("12345"), "12345"); got.status != 413 || got.body != errJSON(msgTooLarge) {
		t.Errorf("5 bytes over a 4-byte limit = %d %s", got.status, got.body)
	}
	// Without Content-Length the limit is enforced while streaming.
	if got := doChunked(t, client, "PUT", "/objects/"+shaOf("12345"), "12345"); got.status != 413 || got.body != errJSON(msgTooLarge) {
		t.Errorf("chunked 5 bytes over a 4-byte limit = %d %s", got.status, got.body)
	}
	if got := do(t, client, "PUT", "/objects/"+shaOf("1234"), "1234"); got.status != 200 {
		t.Errorf("4 bytes = %d %s", got.status, got.body)
	}
	if fs := files(t, st.Layout.Objects()); len(fs) != 1 {
		t.Errorf("objects/ holds %q", fs)
	}
}

func TestNoStorage(t *testing.T) {
	client := unixClient(startServerWith(t, newFakeBackend(), fixedResolver("", nil), nil))
	for _, p := range []string{"/objects", "/steps", "/steps/locals/x"} {
		if got := do(t, client, "GET", p, ""); got.status != 500 || got.body != errJSON(msgNoStorage) {
			t.Errorf("GET %s without storage = %d %s", p, got.status, got.body)
		}
	}
	if got := do(t, client, "PUT", "/objects/"+shaX, "x"); got.status != 413 {
		t.Errorf("PUT object without storage = %d %s", got.status, got.body)
	}
}

// stepJSONOut is an entry of GET /steps as a client reads it.
type stepJSONOut struct {
	Name      string          `json:"name"`
	Date      string          `json:"date"`
	CommitMsg string          `json:"commitmsg"`
	Progress  json.RawMessage `json:"progress"`
}

func TestLocalStep(t *testing.T) {
	st := newStorage(t)
	client := unixClient(startServerWith(t, newFakeBackend(), fixedResolver("mgmt-ctr", nil), st))
	trails := st.Layout.Trails()
	if got := do(t, client, "PUT", "/objects/"+shaX, "x"); got.status != 200 {
		t.Fatalf("put object = %d %s", got.status, got.body)
	}
	if got := do(t, client, "GET", "/steps", ""); got.status != 200 || got.body != "[]" {
		t.Fatalf("empty steps = %d %s", got.status, got.body)
	}

	// Refusals leave nothing on disk.
	missing := shaOf("not uploaded")
	refused := []struct {
		name, path, body string
		status           int
		prefix           string
		contains         []string
	}{
		{"invalid state", "/steps/locals/bad", `{"#spec":"pantavisor-service-system@1","web/run.json":{"name":3},"app/run.json":{"name":4}}`,
			422, `{"Error":"` + msgBadStateJSON + ": ", []string{"app/run.json", "web/run.json"}},
		{"not json", "/steps/locals/bad", `{`, 422, `{"Error":"` + msgBadStateJSON, nil},
		{"missing object", "/steps/locals/bad", stateWith(shaX, missing),
			422, `{"Error":"Storage: `, []string{"web/root.squashfs (" + missing + ")"}},
		{"key escaping the trail", "/steps/locals/bad",
			strings.Replace(permState, `"web/lxc.container.conf"`, `"../x"`, 1), 422, `{"Error":"`, nil},
		// Both keys are objects of the store: the trail could not hold
		// them both, and the state says so, naming the key, rather than
		// an internal error halfway through the install.
		{"key below another key", "/steps/locals/bad",
			strings.TrimSuffix(permState, `}`) + `,"web/root.squashfs/x":"` + shaX + `"}`, 422,
			`{"Error":"` + msgBadStateJSON + ": ", []string{"web/root.squashfs/x: web/root.squashfs is a file of the revision"}},
		{"hidden name", "/steps/locals/.bad", permState, 400, errJSON(msgBadRevName), nil},
		{"long name", "/steps/locals/" + strings.Repeat("n", 65), permState, 400, errJSON(msgBadRevName), nil},
		{"not a local", "/steps/7", permState, 400, errJSON(msgBadRevName), nil},
		{"too large", "/steps/locals/bad", strings.Repeat(" ", maxStateJSON+1), 413, errJSON(msgTooLarge), nil},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			got := do(t, client, "PUT", c.path, c.body)
			if got.status != c.status || !strings.HasPrefix(got.body, c.prefix) {
				t.Fatalf("PUT %s = %d %s, want %d %s...", c.path, got.status, got.body, c.status, c.prefix)
			}
			for _, s := range c.contains {
				if !strings.Contains(got.body, s) {
					t.Errorf("answer %s does not name %q", got.body, s)
				}
			}
			if fs := files(t, trails); len(fs) != 0 {
				t.Errorf("refused install left %q", fs)
			}
		})
	}

	// A good install.
	if got := do(t, client, "PUT", "/steps/locals/x", permState); got.status != 200 {
		t.Fatalf("install = %d %s", got.status, got.body)
	}
	if got := do(t, client, "GET", "/steps/locals/x", ""); got.status != 200 || got.body != permState {
		t.Errorf("state back = %d %q", got.status, got.body)
	}
	wantProgress := `{"status":"NEW","status-msg":"Update ready to be run","progress":0`
	if got := do(t, client, "GET", "/steps/locals/x/progress", ""); got.status != 200 || !strings.HasPrefix(got.body, wantProgress) {
		t.Errorf("progress = %d %s", got.status, got.body)
	}
	if got := do(t, client, "PUT", "/steps/locals/x", permState); got.status != 409 || got.body != errJSON(msgTrailExists) {
		t.Errorf("second install = %d %s", got.status, got.body)
	}

	commit := []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"set", "/steps/locals/x/commitmsg", "first try", 200, ""},
		{"empty", "/steps/locals/x/commitmsg", "", 400, errJSON(msgNoCommitMsg)},
		{"too long", "/steps/locals/x/commitmsg", strings.Repeat("m", maxCommitMsg+1), 413, errJSON(msgTooLarge)},
		{"no such rev", "/steps/locals/y/commitmsg", "m", 404, errJSON(msgNoResource)},
		{"no such remote rev", "/steps/3/commitmsg", "m", 404, errJSON(msgNoResource)},
	}
	for _, c := range commit {
		t.Run("commitmsg "+c.name, func(t *testing.T) {
			got := do(t, client, "PUT", c.path, c.body)
			if got.status != c.status || (c.want != "" && got.body != c.want) {
				t.Fatalf("PUT %s = %d %s, want %d %s", c.path, got.status, got.body, c.status, c.want)
			}
		})
	}

	got := do(t, client, "GET", "/steps", "")
	var steps []stepJSONOut
	if err := json.Unmarshal([]byte(got.body), &steps); err != nil || got.status != 200 || len(steps) != 1 {
		t.Fatalf("steps = %d %s (%v)", got.status, got.body, err)
	}
	s := steps[0]
	if s.Name != "locals/x" || s.CommitMsg != "first try" || !strings.HasPrefix(string(s.Progress), wantProgress) {
		t.Errorf("step = %+v", s)
	}
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`).MatchString(s.Date) {
		t.Errorf("date %q not %%Y-%%m-%%dT%%H:%%M:%%SZ", s.Date)
	}

	// A revision without progress shows {}.
	if err := st.Layout.InstallTrail("5", []byte(permState), storage.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	got = do(t, client, "GET", "/steps", "")
	if !strings.HasPrefix(got.body, `[{"name":"5","date":"`) || !strings.Contains(got.body, `"commitmsg":"","progress":{}}`) {
		t.Errorf("steps with a bare revision = %s", got.body)
	}

	reads := []struct {
		name, path string
		status     int
		want       string
	}{
		{"remote rev", "/steps/5", 200, permState},
		{"remote rev without progress", "/steps/5/progress", 404, errJSON(msgNoResource)},
		{"no current", "/steps/current", 404, errJSON(msgNoResource)},
		{"missing local", "/steps/locals/nope", 404, errJSON(msgNoResource)},
		{"missing local progress", "/steps/locals/nope/progress", 404, errJSON(msgNoResource)},
		{"missing remote", "/steps/6", 404, errJSON(msgNoResource)},
		{"locals itself", "/steps/locals", 404, errJSON(msgNoResource)},
		{"hidden", "/steps/.install-1", 404, errJSON(msgNoResource)},
	}
	for _, c := range reads {
		t.Run("get "+c.name, func(t *testing.T) {
			got := do(t, client, "GET", c.path, "")
			if got.status != c.status || got.body != c.want {
				t.Fatalf("GET %s = %d %s, want %d %s", c.path, got.status, got.body, c.status, c.want)
			}
		})
	}

	// current follows trails/current.
	if err := st.Layout.SetCurrent("locals/x"); err != nil {
		t.Fatal(err)
	}
	if got := do(t, client, "GET", "/steps/current", ""); got.status != 200 || got.body != permState {
		t.Errorf("current = %d %s", got.status, got.body)
	}
	if got := do(t, client, "GET", "/steps/current/progress", ""); got.status != 200 || !strings.HasPrefix(got.body, wantProgress) {
		t.Errorf("current progress = %d %s", got.status, got.body)
	}
}

// TestObjectStreamed checks the upload reaches the disk while the body is
// still coming: it is streamed, never held whole in memory.
func TestObjectStreamed(t *testing.T) {
	st := newStorage(t)
	client := unixClient(startServerWith(t, newFakeBackend(), fixedResolver("", nil), st))
	part := strings.Repeat("s", 1<<20)
	pr, pw := io.Pipe()
	done := make(chan reply, 1)
	go func() {
		req, _ := http.NewRequest("PUT", "http://localhost/objects/"+shaOf(part+part), pr)
		req.ContentLength = int64(2 * len(part))
		res, err := client.Do(req)
		if err != nil {
			done <- reply{status: -1, body: err.Error()}
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		done <- reply{status: res.StatusCode, body: string(b)}
	}()
	if _, err := io.WriteString(pw, part); err != nil {
		t.Fatal(err)
	}
	// The first half must land in a temporary file before the second is
	// sent.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var size int64
		entries, _ := os.ReadDir(st.Layout.Objects())
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), ".") {
				size += fi.Size()
			}
		}
		if size > 0 {
			break
		}
		if time.Now().After(deadline) {
			pw.Close()
			t.Fatal("nothing written to objects/ while the body is half sent")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := io.WriteString(pw, part); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if got := <-done; got.status != 200 {
		t.Fatalf("streamed upload = %d %s", got.status, got.body)
	}
	if fs := files(t, st.Layout.Objects()); len(fs) != 1 || fs[0] != shaOf(part+part) {
		t.Errorf("objects/ holds %q", fs)
	}
}

// Problems of the signatures come first, under upstream's "Secureboot:"
// prefix; the parser's follow under theirs.
func TestBadStateMsgPutsSignaturesFirst(t *testing.T) {
	err := &state.InvalidError{Problems: []state.Problem{
		{File: "web/run.json", Path: "group", Msg: "no group \"x\""},
		{File: "_sigs/web.json", Msg: "signature validation failed", Secureboot: true},
	}}
	want := `Secureboot: _sigs/web.json: signature validation failed; Parser: State JSON has bad format: web/run.json: group: no group "x"`
	if got := badStateMsg(err); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	err.Problems = err.Problems[1:]
	if got := badStateMsg(err); got != "Secureboot: _sigs/web.json: signature validation failed" {
		t.Errorf("signatures alone: %s", got)
	}
}

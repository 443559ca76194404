package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMetaCommands(t *testing.T) {
	sock := startCtrl(t, &fakeBackend{}, "")
	for _, kind := range []struct{ word, path, notFound string }{
		{"devmeta", "/device-meta", "Device meta does not exist"},
		{"usrmeta", "/user-meta", "User meta does not exist"},
	} {
		cases := []struct {
			args   []string
			code   int
			stdout string
			stderr string // contained; "" for none
		}{
			{[]string{kind.word, "ls"}, exitOK, "KEY  VALUE\n", ""},
			{[]string{kind.word, "save", "app.mode", "fast"}, exitOK, "", ""},
			{[]string{kind.word, "save", "note", "two words\there"}, exitOK, "", ""},
			{[]string{kind.word, "list"}, exitOK, "KEY       VALUE\napp.mode  fast\nnote      two words here\n", ""},
			{[]string{kind.word, "ls", "--json"}, exitOK, "{\n  \"app.mode\": \"fast\",\n  \"note\": \"two words\\there\"\n}\n", ""},
			{[]string{kind.word, "save", "empty"}, exitFailed, "", "No data (HTTP 400)"},
			{[]string{kind.word, "save", "../x", "v"}, exitFailed, "", "unknown endpoint: " + kind.path + "/..%2Fx (HTTP 400)"},
			{[]string{kind.word, "save", ".hidden", "v"}, exitFailed, "", `Bad meta key ".hidden": starts with a dot (HTTP 400)`},
			{[]string{kind.word, "delete", "app.mode"}, exitOK, "", ""},
			{[]string{kind.word, "delete", "app.mode"}, exitFailed, "", kind.notFound + " (HTTP 404)"},
			{[]string{kind.word, "delete"}, exitUsage, "", "usage: pvcontrol " + kind.word + " delete KEY"},
			{[]string{kind.word, "save"}, exitUsage, "", "wrong number of arguments"},
		}
		if kind.word == "devmeta" {
			cases = append(cases, struct {
				args   []string
				code   int
				stdout string
				stderr string
			}{[]string{"devmeta", "upload", "up", "v"}, exitOK, "", ""})
		}
		for _, c := range cases {
			code, out, errs := runCmd(append([]string{"-s", sock}, c.args...)...)
			if code != c.code || out != c.stdout || (c.stderr == "") != (errs == "") || !strings.Contains(errs, c.stderr) {
				t.Errorf("pvcontrol %q = %d stdout %q stderr %q, want %d %q %q", c.args, code, out, errs, c.code, c.stdout, c.stderr)
			}
		}
	}
}

func TestInfoCommands(t *testing.T) {
	sock := startCtrl(t, &fakeBackend{}, "")
	cases := []struct {
		args   []string
		code   int
		stdout string // exact; a prefix when it ends with "..."
		stderr string // contained; "" for none
	}{
		{[]string{"buildinfo"}, exitOK, "go\t...", ""},
		{[]string{"config", "ls"}, exitOK, "KEY  ...", ""},
		{[]string{"conf", "ls"}, exitOK, "KEY  ...", ""},
		{[]string{"configuration", "list"}, exitOK, "KEY  ...", ""},
		{[]string{"graph", "ls"}, exitOK, "CONSUMER  PROVIDER  NAME  TYPE  ROLE  INTERFACE  TARGET  SOCKET\n", ""},
		{[]string{"graph", "ls", "--json"}, exitOK, "[]\n", ""},
		{[]string{"daemons", "ls"}, exitOK, "NAME  PID  RESPAWN\n", ""},
		{[]string{"daemons", "ls", "--json"}, exitOK, "[]\n", ""},
		{[]string{"daemons", "start", "pv-xconnect"}, exitFailed, "", "Daemon not found (HTTP 404)"},
		{[]string{"daemons", "stop", "pv-xconnect"}, exitFailed, "", "Daemon not found (HTTP 404)"},
		{[]string{"daemons", "restart", "pv-xconnect"}, exitFailed, "", "Daemon not found (HTTP 404)"},
		{[]string{"daemons", "start"}, exitUsage, "", "usage: pvcontrol daemons start NAME"},
		{[]string{"buildinfo", "x"}, exitUsage, "", "wrong number of arguments"},
	}
	for _, c := range cases {
		code, out, errs := runCmd(append([]string{"-s", sock}, c.args...)...)
		okOut := out == c.stdout
		if p, ok := strings.CutSuffix(c.stdout, "..."); ok {
			okOut = strings.HasPrefix(out, p)
		}
		if code != c.code || !okOut || (c.stderr == "") != (errs == "") || !strings.Contains(errs, c.stderr) {
			t.Errorf("pvcontrol %q = %d stdout %q stderr %q, want %d %q %q", c.args, code, out, errs, c.code, c.stdout, c.stderr)
		}
	}
}

// TestConfigTables checks both config listings show a known key with its
// value, and where it comes from for conf ls.
func TestConfigTables(t *testing.T) {
	sock := startCtrl(t, &fakeBackend{}, "")
	if code, _, errs := runCmd("-s", sock, "usrmeta", "save", "PV_LOG_LEVEL", "5"); code != 0 {
		t.Fatalf("usrmeta save: %d %s", code, errs)
	}
	_, out, _ := runCmd("-s", sock, "conf", "ls")
	if !containsRow(out, "PV_LOG_LEVEL", "5", "metadata") {
		t.Errorf("conf ls has no PV_LOG_LEVEL 5 metadata row:\n%s", out)
	}
	_, out, _ = runCmd("-s", sock, "config", "ls")
	if !containsRow(out, "log.level", "5") {
		t.Errorf("config ls has no log.level 5 row:\n%s", out)
	}
	_, out, _ = runCmd("-s", sock, "config", "ls", "--json")
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil || m["log.level"] != 5.0 {
		t.Errorf("config ls --json: %v, log.level %v", err, m["log.level"])
	}
}

// containsRow reports whether a table line is exactly cells.
func containsRow(table string, cells ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		if strings.Join(strings.Fields(line), " ") == strings.Join(cells, " ") {
			return true
		}
	}
	return false
}

func TestRequest(t *testing.T) {
	sock := startCtrl(t, &fakeBackend{}, "")
	file := filepath.Join(t.TempDir(), "value")
	if err := os.WriteFile(file, []byte("from a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args   []string
		code   int
		stdout string
		stderr string // contained; "" for none
	}{
		{[]string{"request", "PUT", "/user-meta/a", "inline"}, exitOK, "", ""},
		{[]string{"request", "PUT", "/user-meta/b", "@" + file}, exitOK, "", ""},
		// The body exactly as the server sent it, without a newline added.
		{[]string{"request", "GET", "/user-meta"}, exitOK, `{"a":"inline","b":"from a file"}`, ""},
		{[]string{"request", "GET", "/daemons"}, exitOK, "[]", ""},
		{[]string{"request", "GET", "/nope"}, exitFailed, "", "unknown endpoint: /nope (HTTP 400)"},
		{[]string{"request", "DELETE", "/user-meta/zz"}, exitFailed, "", "User meta does not exist (HTTP 404)"},
		{[]string{"request", "PUT", "/user-meta/c", "@" + file + ".missing"}, exitFailed, "", "no such file"},
		{[]string{"request", "get", "/containers"}, exitUsage, "", "want an upper-case HTTP method"},
		{[]string{"request", "GET", "containers"}, exitUsage, "", "want an absolute path"},
		{[]string{"request", "GET"}, exitUsage, "", "usage: pvcontrol request METHOD PATH [BODY|@FILE]"},
	}
	for _, c := range cases {
		code, out, errs := runCmd(append([]string{"-s", sock}, c.args...)...)
		if code != c.code || out != c.stdout || (c.stderr == "") != (errs == "") || !strings.Contains(errs, c.stderr) {
			t.Errorf("pvcontrol %q = %d stdout %q stderr %q, want %d %q %q", c.args, code, out, errs, c.code, c.stdout, c.stderr)
		}
	}
}

// TestRequestGetObjectIsExact: `pvcontrol request GET /objects/SHA` prints
// the object byte for byte, even one that does not end in a newline.
func TestRequestGetObjectIsExact(t *testing.T) {
	sock := startCtrlStorage(t)
	content := "\x00\x01binary object without a final newline"
	obj := writeFile(t, t.TempDir(), "obj", content)
	if code, _, errs := runCmd("-s", sock, "objects", "put", obj); code != 0 {
		t.Fatalf("objects put: %d %s", code, errs)
	}
	code, out, errs := runCmd("-s", sock, "request", "GET", "/objects/"+hexSHA(content))
	if code != 0 || out != content {
		t.Errorf("request GET /objects/SHA = %d, stdout %q (sha256 %s), stderr %q; want the object %q (sha256 %s)",
			code, out, hexSHA(out), errs, content, hexSHA(content))
	}
}

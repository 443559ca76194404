package ctrl

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// curlCall runs the real curl against sock as upstream's pvcontrol does
// (-s -w "\n%{http_code}") and returns the status and the body.
func curlCall(t *testing.T, sock string, args ...string) (int, string) {
	t.Helper()
	all := append([]string{"-s", "-w", "\n%{http_code}", "--connect-timeout", "5", "--max-time", "60",
		"--unix-socket", sock}, args...)
	out, err := exec.Command("curl", all...).Output()
	if err != nil {
		t.Fatalf("curl %q: %v", args, err)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	if i < 0 {
		t.Fatalf("curl %q: no status in %q", args, s)
	}
	code, err := strconv.Atoi(s[i+1:])
	if err != nil {
		t.Fatalf("curl %q: status %q", args, s[i+1:])
	}
	return code, s[:i]
}

// TestCurlLocalUpdate uploads objects and a local revision with the real
// curl over the unix socket, the way pvcontrol does, and reads them back.
func TestCurlLocalUpdate(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (scripts/deps.sh installs it): the end-to-end check with the real client is skipped")
	}
	st := newStorage(t)
	b := newFakeBackend()
	sock := startServerWith(t, b, fixedResolver("", nil), st)
	dir := t.TempDir()

	// 3 MiB: beyond curl's Expect: 100-continue threshold, and more than
	// one read buffer, so the upload is streamed.
	big := make([]byte, 3<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(big)
	bigSHA := hex.EncodeToString(h[:])
	bigFile := filepath.Join(dir, "root.squashfs")
	conf := filepath.Join(dir, "lxc.container.conf")
	stateFile := filepath.Join(dir, "state.json")
	state := stateWith(shaOf("lxc conf\n"), bigSHA)
	for p, data := range map[string]string{bigFile: string(big), conf: "lxc conf\n", stateFile: state} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	url := "http://localhost"
	put := func(path, file string) (int, string) {
		return curlCall(t, sock, "-X", "PUT", "--data-binary", "@"+file, url+path)
	}

	// The revision before its objects: refused, naming what is missing.
	if code, body := put("/steps/locals/e2e", stateFile); code != 422 || !strings.Contains(body, bigSHA) {
		t.Fatalf("state before objects = %d %s", code, body)
	}
	if code, body := put("/objects/"+shaOf("other"), conf); code != 422 || body != errJSON(msgBadChecksum) {
		t.Errorf("bad checksum = %d %s", code, body)
	}
	for _, c := range []struct{ sha, file string }{{bigSHA, bigFile}, {shaOf("lxc conf\n"), conf}, {bigSHA, bigFile}} {
		if code, body := put("/objects/"+c.sha, c.file); code != 200 {
			t.Fatalf("put %s = %d %s", c.file, code, body)
		}
	}
	if code, body := curlCall(t, sock, url+"/objects"); code != 200 || !strings.Contains(body, `{"sha256":"`+bigSHA+`","size":"3145728"}`) {
		t.Errorf("objects = %d %s", code, body)
	}
	got := filepath.Join(dir, "got")
	if code, _ := curlCall(t, sock, "-o", got, url+"/objects/"+bigSHA); code != 200 {
		t.Fatalf("get object = %d", code)
	}
	if b, err := os.ReadFile(got); err != nil || !bytes.Equal(b, big) {
		t.Errorf("object read back differs (%v)", err)
	}

	if code, body := put("/steps/locals/e2e", stateFile); code != 200 {
		t.Fatalf("install = %d %s", code, body)
	}
	if code, body := curlCall(t, sock, url+"/steps/locals/e2e"); code != 200 || body != state {
		t.Errorf("state back = %d %s", code, body)
	}
	if code, body := curlCall(t, sock, "-X", "PUT", "--data", "via curl", url+"/steps/locals/e2e/commitmsg"); code != 200 {
		t.Errorf("commitmsg = %d %s", code, body)
	}
	code, body := curlCall(t, sock, url+"/steps")
	if code != 200 || !strings.Contains(body, `"name":"locals/e2e"`) || !strings.Contains(body, `"commitmsg":"via curl"`) ||
		!strings.Contains(body, `"status-msg":"Update ready to be run"`) {
		t.Errorf("steps = %d %s", code, body)
	}
	if code, body := curlCall(t, sock, url+"/steps/locals/e2e/progress"); code != 200 || !strings.Contains(body, `"status":"NEW"`) {
		t.Errorf("progress = %d %s", code, body)
	}

	// Running it: POST /commands as upstream's pvcontrol sends it.
	if code, body := curlCall(t, sock, "-X", "POST", "--data", `{"op":"LOCAL_RUN","payload":"locals/e2e"}`, url+"/commands"); code != 200 || body != "" {
		t.Errorf("LOCAL_RUN = %d %s", code, body)
	}
	if cmds := b.commandLog(); len(cmds) != 1 || cmds[0] != "run locals/e2e" {
		t.Errorf("backend commands = %q", cmds)
	}
}

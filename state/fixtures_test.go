package state

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/signature"
)

// fixturesDir holds real upstream states (pvtx test resources and expected
// outputs), kept in the repository's testdata/ (see its README for their
// origin and license).
func fixturesDir(t testing.TB) string {
	t.Helper()
	const dir = "../testdata/upstream-pvtx"
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("upstream fixtures: %v", err)
	}
	return dir
}

func fixtureFiles(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join(fixturesDir(t), "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	return files
}

func TestFixturesValidateAppengine(t *testing.T) {
	files := fixtureFiles(t)
	if len(files) != 29 {
		t.Errorf("found %d fixtures, want 29", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			st, err := Parse(data, Options{AppEngine: true})
			if err != nil {
				t.Fatalf("appengine: %v", err)
			}
			for _, w := range st.Warnings {
				t.Logf("warning: %s", w)
			}
			embedded, err := Parse(data, Options{})
			hasBSP := strings.Contains(string(data), `"bsp/run.json"`)
			switch {
			case hasBSP && err != nil:
				t.Errorf("embedded: %v", err)
			case !hasBSP && err == nil:
				t.Errorf("embedded: a state without bsp/run.json validated")
			case hasBSP && embedded.BSP == nil:
				t.Errorf("embedded: BSP not parsed")
			}
		})
	}
}

// A container's config overlay is its _config/<name>/ keys, objects and
// inline documents alike, and nobody else's.
func TestFixtureConfigOverlay(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(fixturesDir(t), "expected-state_after_pvwificonnect.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := Parse(data, Options{AppEngine: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range st.Containers {
		for _, f := range c.ConfigOverlay() {
			var doc bytes.Buffer
			json.Compact(&doc, f.Data)
			kind := "document " + doc.String()
			if f.Sha != "" {
				kind = "object " + f.Sha[:8]
			}
			if f.Key != ConfigPrefix(c.Name)+f.Path {
				t.Errorf("%s: key %s and path %s disagree", c.Name, f.Key, f.Path)
			}
			got = append(got, c.Name+": "+f.Path+" "+kind)
		}
	}
	want := []string{
		"awconnect: etc/NetworkManager/dnsmasq-shared.d/device-dns.conf object 4a3d3154",
		"awconnect: etc/iptables/dump object a4cfeef3",
		"awconnect: etc/iptables/rules.v4 object 6deed309",
		"awconnect: etc/iptables/rules.v6 object b7c1828d",
		`awconnect: etc/wifi-connect/conf.d/WifiHotspot.json document {"psk":"p4nt4c0r","ssid":"pantacor"}`,
		"pv-avahi: etc/hostname object 2c8b08da",
		`pvr-sdk: etc/pvr-sdk/config.json document {"httpd":{"listen":"0.0.0.0","port":"12368"}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("config overlays:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Options.Signatures refuses a revision whose signature fails, naming its
// key, and passes one whose signatures verify.
func TestParseChecksSignatures(t *testing.T) {
	v := &signature.Verifier{Mode: signature.Lenient, TrustStore: filepath.Join("..", "signature", "testdata", "pantavisor-dev-ca.crt"),
		Now: func() time.Time { return time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC) }}
	good, err := os.ReadFile(filepath.Join(fixturesDir(t), "resources-awconnect.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(good, Options{AppEngine: true, Signatures: v}); err != nil {
		t.Errorf("a signed revision: %v", err)
	}
	bad := strings.Replace(string(good), `"root.squashfs"`, `"evil.squashfs"`, 1)
	if bad == string(good) {
		t.Fatal("the test's edit did not apply")
	}
	_, err = Parse([]byte(bad), Options{AppEngine: true, Signatures: v})
	found := false
	for _, p := range Problems(err) {
		found = found || p.File == "_sigs/awconnect.json" && strings.Contains(p.Msg, "PV_SECUREBOOT_MODE=lenient")
	}
	if !found {
		t.Errorf("a tampered revision: %v", err)
	}
	v.Mode = signature.Audit
	st, err := Parse(good, Options{AppEngine: true, Signatures: v})
	if err != nil || len(st.Warnings) == 0 || !strings.Contains(st.Warnings[len(st.Warnings)-1].Msg, "covered by no signature") {
		t.Errorf("audit: %v, warnings %v", err, st.Warnings)
	}
}

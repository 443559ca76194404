//go:build integration

package integration

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/isolated"
	"github.com/pantavisor/pv/internal/pvstest"
	"github.com/pantavisor/pv/signature"
)

// signer is a certificate authority the device trusts and a signer it
// issued.
type signer struct {
	caPEM []byte
	key   crypto.Signer
	chain []*x509.Certificate
}

func newSigner(t *testing.T) signer {
	t.Helper()
	ca, key := pvstest.NewCA(t, "device maker CA"), pvstest.Key(t)
	return signer{caPEM: ca.PEM(), key: key, chain: []*x509.Certificate{ca.Issue(t, "release signer", key)}}
}

// signRevision signs revision 0 of the storage Build laid out under dir,
// every key covered: a directory by "<dir>/**", a top-level file by name.
func (s signer) signRevision(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, "trails", "0", ".pvr", "json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var include []string
	for k := range doc {
		g := k
		if first, _, ok := strings.Cut(k, "/"); ok {
			g = first + "/**"
		}
		if !slices.Contains(include, g) {
			include = append(include, g)
		}
	}
	slices.Sort(include)
	signed, err := signature.Sign(data, "_sigs/release.json", s.key, s.chain, include, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, signed, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A device in PV_SECUREBOOT_MODE=strict, its trust store under
// PV_SYSTEM_ETCPANTAVISORDIR, runs a revision signed by a signer that
// store trusts, and refuses at upload, with nothing installed, one whose
// signed content changed after the signing, one that is not signed, and
// one signed by a signer it does not trust; it takes a new signed one.
func TestSignedRevisions(t *testing.T) {
	isolated.Require(t)
	s := newSigner(t)
	etc := t.TempDir()
	trust := filepath.Join(etc, "pvs", "trust")
	if err := os.MkdirAll(trust, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(trust, "ca-certificates.crt"), s.caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "pantavisor.config")
	if err := os.WriteFile(conf, []byte("PV_SECUREBOOT_MODE=strict\nPV_SYSTEM_ETCPANTAVISORDIR="+etc+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := buildStorage(t, updateGroups(), updateCtrs("sys-v1", echoer("b-v1"), nil))
	s.signRevision(t, dir)
	d := startDeviceArgs(t, dir, "--config", conf)
	d.waitUp("the signed revision", 30*time.Second)
	if !strings.Contains(d.log(), "revision signatures are checked") {
		t.Errorf("the check is not logged:\n%s", d.log())
	}

	refused := func(name, dir string, want ...string) {
		t.Helper()
		out, code := d.install(dir, name)
		if code == 0 {
			t.Errorf("%s installed: %s", name, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s refused with %q, which does not name %q", name, out, w)
			}
		}
		t.Logf("%s refused: %s", name, out)
		if out, code := d.pvcontrol("steps", "get", "locals/"+name); code == 0 {
			t.Errorf("%s is on the device after its refusal: %s", name, out)
		}
	}

	tampered := buildStorage(t, updateGroups(), updateCtrs("sys-v1", echoer("b-v2"), nil))
	s.signRevision(t, tampered)
	path := filepath.Join(tampered, "trails", "0", ".pvr", "json")
	data, _ := os.ReadFile(path)
	evil := strings.Replace(string(data), `"group":"app"`, `"group":"core"`, 1)
	if evil == string(data) {
		t.Fatal("the test's edit did not apply")
	}
	os.WriteFile(path, []byte(evil), 0o644)
	refused("tampered", tampered, "Secureboot: _sigs/release.json", "signature validation failed")

	unsigned := buildStorage(t, updateGroups(), updateCtrs("sys-v1", echoer("b-v2"), nil))
	refused("unsigned", unsigned, "not covered", "PV_SECUREBOOT_MODE=strict")

	stranger := buildStorage(t, updateGroups(), updateCtrs("sys-v1", echoer("b-v2"), nil))
	newSigner(t).signRevision(t, stranger)
	refused("stranger", stranger, "unknown authority")

	next := buildStorage(t, updateGroups(), updateCtrs("sys-v1", echoer("b-v2"), nil))
	s.signRevision(t, next)
	if out, code := d.install(next, "next"); code != 0 {
		t.Fatalf("a signed revision refused: %d %s", code, out)
	}
	if out, code := d.pvcontrol("cmd", "run", "locals/next"); code != 0 {
		t.Fatalf("cmd run of a signed revision: %d %s", code, out)
	}
	d.waitConsole("b", "b-v2", 60*time.Second)
}

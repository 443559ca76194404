package signature

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pantavisor/pv/internal/pvstest"
)

// upstream reads a state of the upstream fixtures.
func upstream(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "upstream-pvtx", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// whileValid is a day the upstream signer's certificate was valid.
func whileValid() time.Time { return time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC) }

func devVerifier(mode Mode) *Verifier {
	return &Verifier{Mode: mode, TrustStore: filepath.Join("testdata", "pantavisor-dev-ca.crt"), Now: whileValid}
}

// The upstream signer was valid before ClockFloor: the tests that check
// its validity move the floor back.
func TestMain(m *testing.M) {
	ClockFloor = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	os.Exit(m.Run())
}

func problems(t *testing.T, err error) []Problem {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want an *Error", err)
	}
	return e.Problems
}

// Signatures made by upstream's pvr verify, each against the payload it
// covers, in a state that jq printed again in its own layout.
func TestUpstreamSignaturesVerify(t *testing.T) {
	for name, want := range map[string][]string{
		"resources-awconnect.json":     {"_sigs/awconnect.json"},
		"resources-config_b_glob.json": {"_sigs/config_b.json"},
		"resources-config_a.json":      {"_sigs/config_a.json"},
	} {
		rep, err := devVerifier(Lenient).Verify(upstream(t, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !slices.Equal(rep.Verified, want) {
			t.Errorf("%s: verified %v, want %v", name, rep.Verified, want)
		}
	}
}

// A signature whose keys are gone (pvtx removed _hostconfig, its
// signature stayed) fails, named; the others verify.
func TestAStaleSignatureFails(t *testing.T) {
	rep, err := devVerifier(Lenient).Verify(upstream(t, "expected-state_after_pvwificonnect.json"))
	ps := problems(t, err)
	if len(ps) != 1 || ps[0].Key != "_sigs/_hostconfig.json" || !strings.Contains(ps[0].Reason, "does not match") {
		t.Errorf("problems %v", ps)
	}
	if want := []string{"_sigs/awconnect.json", "_sigs/bsp.json", "_sigs/pv-avahi.json", "_sigs/pvr-sdk.json", "_sigs/pvwificonnect.json"}; !slices.Equal(rep.Verified, want) {
		t.Errorf("verified %v, want %v", rep.Verified, want)
	}
}

func TestTamperedRevisionFails(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(upstream(t, "resources-awconnect.json"), &doc); err != nil {
		t.Fatal(err)
	}
	run := doc["awconnect/run.json"].(map[string]any)
	run["root-volume"] = "evil.squashfs"
	data, _ := json.Marshal(doc)
	_, err := devVerifier(Lenient).Verify(data)
	if ps := problems(t, err); len(ps) != 1 || ps[0].Key != "_sigs/awconnect.json" {
		t.Errorf("problems %v", ps)
	}
	// A key the signature excludes may change.
	doc = nil
	json.Unmarshal(upstream(t, "resources-awconnect.json"), &doc)
	doc["awconnect/src.json"] = map[string]any{"changed": true}
	data, _ = json.Marshal(doc)
	if _, err := devVerifier(Lenient).Verify(data); err != nil {
		t.Errorf("an excluded key changed: %v", err)
	}
}

func TestChainChecks(t *testing.T) {
	data := upstream(t, "resources-awconnect.json")
	v := devVerifier(Lenient)
	v.Now = time.Now // the signer's certificate expired in 2024
	if _, err := v.Verify(data); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("an expired signer: %v", err)
	}
	// A clock before the floor is no clock: the chain is checked at its
	// signer's start.
	saved := ClockFloor
	ClockFloor = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v.Now = func() time.Time { return time.Unix(0, 0) }
	if _, err := v.Verify(data); err != nil {
		t.Errorf("a clock in 1970: %v", err)
	}
	ClockFloor = saved
	// A revision on the device, at a boot with no clock yet or after
	// the expiry: the chain is checked at its signer's start.
	for _, now := range []time.Time{time.Unix(0, 0), time.Now()} {
		v.Now, v.AnyTime = func() time.Time { return now }, true
		if _, err := v.Verify(data); err != nil {
			t.Errorf("AnyTime, at %v: %v", now, err)
		}
	}
	v = devVerifier(Lenient)
	v.TrustStore = filepath.Join(t.TempDir(), "none.crt")
	if _, err := v.Verify(data); err == nil || !strings.Contains(err.Error(), "none.crt") {
		t.Errorf("no trust store: %v", err)
	}
	other := pvstest.NewCA(t, "other CA").Store(t)
	v.TrustStore = other
	if _, err := v.Verify(data); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("another trust store: %v", err)
	}
}

func TestModes(t *testing.T) {
	data := upstream(t, "resources-awconnect.json") // #spec is covered by no signature
	if _, err := devVerifier(Lenient).Verify(data); err != nil {
		t.Errorf("lenient: %v", err)
	}
	rep, err := devVerifier(Audit).Verify(data)
	if err != nil || !slices.Contains(rep.Uncovered, "#spec") {
		t.Errorf("audit: %v, uncovered %v", err, rep.Uncovered)
	}
	_, err = devVerifier(Strict).Verify(data)
	if ps := problems(t, err); len(ps) != 1 || !strings.Contains(ps[0].Reason, "#spec") {
		t.Errorf("strict: %v", ps)
	}
	stale := upstream(t, "expected-state_after_pvwificonnect.json")
	if _, err := devVerifier(Audit).Verify(stale); err == nil {
		t.Error("audit passed a signature that does not verify")
	}
	if rep, err := (&Verifier{Mode: Disabled}).Verify(stale); err != nil || rep.Verified != nil {
		t.Errorf("disabled: %v %v", rep, err)
	}
	// An unsigned revision: lenient runs it, strict refuses every key.
	unsigned := []byte(`{"#spec":"pantavisor-service-system@1","a/run.json":{"name":"a"}}`)
	if _, err := devVerifier(Lenient).Verify(unsigned); err != nil {
		t.Errorf("lenient, unsigned: %v", err)
	}
	if _, err := devVerifier(Strict).Verify(unsigned); err == nil || !strings.Contains(err.Error(), "a/run.json") {
		t.Errorf("strict, unsigned: %v", err)
	}
}

// --- signatures made here, with keys of the test's own ---

// sign adds to doc the signature sigKey (Sign) of the keys include and
// exclude select, with chain as x5c (none: no x5c). der writes an ECDSA
// signature in ASN.1 DER, as upstream's check reads it, rather than as
// JWS writes it.
func sign(t *testing.T, doc map[string]any, sigKey string, key crypto.Signer, chain []*x509.Certificate, include, exclude []string, der bool) {
	t.Helper()
	signed, err := Sign(marshal(t, doc), sigKey, key, chain, include, exclude)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(signed, &out); err != nil {
		t.Fatal(err)
	}
	sig := out[sigKey].(map[string]any)
	if der {
		raw, _ := base64.RawURLEncoding.DecodeString(sig["signature"].(string))
		r, s := new(big.Int).SetBytes(raw[:len(raw)/2]), new(big.Int).SetBytes(raw[len(raw)/2:])
		b, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
		if err != nil {
			t.Fatal(err)
		}
		sig["signature"] = base64.RawURLEncoding.EncodeToString(b)
	}
	doc[sigKey] = sig
}

func testDoc() map[string]any {
	return map[string]any{
		"#spec":                    "pantavisor-service-system@1",
		"bsp/run.json":             map[string]any{"linux": "kernel.img", "initrd": "pantavisor"},
		"bsp/kernel.img":           strings.Repeat("ab", 32),
		"app/run.json":             map[string]any{"name": "app", "root-volume": "root.squashfs"},
		"oem/run.json":             map[string]any{"name": "oem"},
		"_config/app/etc/app.conf": strings.Repeat("cd", 32),
	}
}

func marshal(t *testing.T, doc map[string]any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(doc, "", "    ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOwnSignatures(t *testing.T) {
	root := pvstest.NewCA(t, "test CA")
	store := root.Store(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v := &Verifier{Mode: Strict, TrustStore: store}
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		der  bool
	}{{"RS256", rsaKey, false}, {"ES256 as JWS", ecKey, false}, {"ES256 in DER", ecKey, true}} {
		t.Run(tc.name, func(t *testing.T) {
			doc := testDoc()
			leaf := root.Issue(t, "signer", tc.key)
			sign(t, doc, "_sigs/bsp.json", tc.key, []*x509.Certificate{leaf}, []string{"bsp/**", "#spec"}, []string{}, tc.der)
			sign(t, doc, "_sigs/app.json", tc.key, []*x509.Certificate{leaf}, []string{"app/**", "_config/app/**", "oem/**"}, []string{}, tc.der)
			rep, err := v.Verify(marshal(t, doc))
			if err != nil || len(rep.Verified) != 2 {
				t.Fatalf("verified %v: %v", rep.Verified, err)
			}
			doc["_config/app/etc/app.conf"] = strings.Repeat("ef", 32)
			if _, err := v.Verify(marshal(t, doc)); err == nil || !strings.Contains(err.Error(), "_sigs/app.json") {
				t.Errorf("a changed config file: %v", err)
			}
		})
	}
}

func TestPublicKeyWithoutChain(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	pub := filepath.Join(t.TempDir(), "pub.pem")
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	doc := testDoc()
	sign(t, doc, "_sigs/app.json", key, nil, []string{"app/**"}, nil, false) // ES384
	if _, err := (&Verifier{Mode: Lenient, PublicKey: pub}).Verify(marshal(t, doc)); err != nil {
		t.Errorf("with the public key: %v", err)
	}
	if _, err := (&Verifier{Mode: Lenient}).Verify(marshal(t, doc)); err == nil || !strings.Contains(err.Error(), "no public key") {
		t.Errorf("without one: %v", err)
	}
}

// An OEM signer (its certificate's name is PV_OEM_NAME) is checked
// against the OEM trust store, unless it signs the BSP or the OEM's own
// container.
func TestOEMSigner(t *testing.T) {
	main, oem := pvstest.NewCA(t, "main CA"), pvstest.NewCA(t, "OEM CA")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := oem.Issue(t, "acme", key)
	v := &Verifier{Mode: Lenient, TrustStore: main.Store(t), OEMTrustStore: oem.Store(t), OEMName: "acme"}
	doc := testDoc()
	sign(t, doc, "_sigs/app.json", key, []*x509.Certificate{leaf}, []string{"app/**"}, []string{}, false)
	if _, err := v.Verify(marshal(t, doc)); err != nil {
		t.Errorf("an OEM signer of a container: %v", err)
	}
	for _, include := range [][]string{{"bsp/**"}, {"acme/**"}} {
		doc := testDoc()
		doc["acme/run.json"] = map[string]any{"name": "acme"}
		sign(t, doc, "_sigs/x.json", key, []*x509.Certificate{leaf}, include, []string{}, false)
		if _, err := v.Verify(marshal(t, doc)); err == nil || !strings.Contains(err.Error(), "unknown authority") {
			t.Errorf("an OEM signer of %v: %v", include, err)
		}
	}
	v.OEMName = ""
	if _, err := v.Verify(marshal(t, doc)); err == nil {
		t.Error("an OEM signer with no PV_OEM_NAME verified")
	}
}

// An OEM signer may not sign the BSP nor the OEM's own container, and
// so may not waive them either: in strict mode, keys its exclude globs
// name there stay uncovered, whoever else signs or not.
func TestOEMSignerExcludingBSPCoversNothing(t *testing.T) {
	main, oem := pvstest.NewCA(t, "main CA"), pvstest.NewCA(t, "OEM CA")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := oem.Issue(t, "acme", key)
	v := &Verifier{Mode: Strict, TrustStore: main.Store(t), OEMTrustStore: oem.Store(t), OEMName: "acme"}
	for _, waived := range []string{"bsp", "acme"} {
		doc := testDoc()
		doc["acme/run.json"] = map[string]any{"name": "acme"}
		for key := range doc {
			// The other of the two is not there, or it would be
			// uncovered anyway: only the one waived is in question.
			if other := map[string]string{"bsp": "acme", "acme": "bsp"}[waived]; strings.HasPrefix(key, other+"/") {
				delete(doc, key)
			}
		}
		include := []string{"#spec", "app/**", "_config/app/**", "oem/**"}
		sign(t, doc, "_sigs/oem.json", key, []*x509.Certificate{leaf}, include, []string{waived + "/**"}, false)
		_, err := v.Verify(marshal(t, doc))
		if err == nil || !strings.Contains(err.Error(), waived+"/run.json") || !strings.Contains(err.Error(), "not covered") {
			t.Errorf("an OEM signer excluding %s/**: %v", waived, err)
		}
	}
}

// A signed document with a key twice is refused: decoded, it would be
// the payload of the document with that key once, while the device
// writes it as it came, both values under the signature.
func TestSignedDocumentsReadOneWay(t *testing.T) {
	ca, key := pvstest.NewCA(t, "ca"), pvstest.Key(t)
	v := &Verifier{Mode: Strict, TrustStore: ca.Store(t)}
	doc := testDoc()
	doc["app/conf.json"] = map[string]any{"user": "app", "list": []any{map[string]any{"user": "app"}}}
	sign(t, doc, "_sigs/all.json", key, []*x509.Certificate{ca.Issue(t, "signer", key)}, []string{"#spec", "bsp/**", "app/**", "_config/app/**", "oem/**"}, nil, false)
	signed := marshal(t, doc)
	if _, err := v.Verify(signed); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new string }{
		{"a duplicate key", `"user": "app"`, `"user": "root", "user": "app"`},
	} {
		tampered := bytes.Replace(signed, []byte(tc.old), []byte(tc.new), 1)
		if _, err := v.Verify(tampered); err == nil || !strings.Contains(err.Error(), `app/conf.json: key "user" appears more than once`) {
			t.Errorf("%s: %v: %s", tc.name, err, tampered)
		}
	}
}

// pvs is a signature value whose header has these globs (its signature
// and chain do not matter: the work is done before they are checked).
func pvs(include []string) string {
	h, _ := json.Marshal(map[string]any{"alg": "ES256", "typ": "PVS", "pvs": map[string]any{"include": include, "exclude": []string{}}})
	return fmt.Sprintf(`{"#spec":"pvs@2","protected":%q,"signature":"AA"}`, base64.RawURLEncoding.EncodeToString(h))
}

// A state an upload accepts (at most 4 MiB) cannot keep Verify busy:
// its keys and globs are the sender's, and matching each glob against
// each key costs their product. The timeout only catches a hang.
func TestVerifyWorkIsBounded(t *testing.T) {
	var many bytes.Buffer // 200,000 globs against 200,000 keys
	many.WriteString(`{"#spec":"x"`)
	for i := range 200000 {
		fmt.Fprintf(&many, `,"k%d":0`, i)
	}
	globs := make([]string, 200000)
	for i := range globs {
		globs[i] = "x*"
	}
	fmt.Fprintf(&many, `,"_sigs/a.json":%s}`, pvs(globs))

	long := strings.Repeat("a", 1<<20) // one glob "*aaa…ab" against one key "aaa…a"
	quadratic := fmt.Sprintf(`{"%s":0,"_sigs/a.json":%s}`, long, pvs([]string{"*" + long + "b"}))

	var sigs bytes.Buffer // 10,000 signatures of a 1 MiB value each
	fmt.Fprintf(&sigs, `{"app/big.json":%q`, strings.Repeat("b", 1<<20))
	for i := range 10000 {
		fmt.Fprintf(&sigs, `,"_sigs/%d.json":%s`, i, pvs([]string{"app/*"}))
	}
	sigs.WriteString("}")

	for _, tc := range []struct {
		name  string
		state []byte
	}{{"many_globs_and_keys", many.Bytes()}, {"a_long_glob_and_key", []byte(quadratic)}, {"many_signatures", sigs.Bytes()}} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.state) > 4<<20 {
				t.Fatalf("%d bytes, more than an upload", len(tc.state))
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			done := make(chan error, 1)
			go func() {
				_, err := (&Verifier{Mode: Lenient}).Verify(tc.state)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "more work than a device does") {
					t.Errorf("Verify: %.300v", err)
				}
			case <-time.After(2 * time.Minute):
				t.Fatal("Verify still busy after 2 minutes")
			}
			runtime.ReadMemStats(&after)
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<30 {
				t.Errorf("Verify allocated %d MiB", n>>20)
			}
		})
	}
}

// A certificate the trust store's CA issued for another purpose (a
// server's or a device's TLS certificate, a key for encryption) signs no
// revision; one for code signing does, as upstream's signers have it.
func TestSignerCertificatePurpose(t *testing.T) {
	ca, key := pvstest.NewCA(t, "ca"), pvstest.Key(t)
	v := &Verifier{Mode: Strict, TrustStore: ca.Store(t)}
	for _, tc := range []struct {
		name string
		ku   x509.KeyUsage
		eku  []x509.ExtKeyUsage
		ok   bool
	}{
		{"code signing", x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, true},
		{"no extended key usage", x509.KeyUsageDigitalSignature, nil, true},
		{"TLS server", x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, false},
		{"TLS client", x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false},
		{"encryption only", x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement, nil, false},
	} {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "signer"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: tc.ku, ExtKeyUsage: tc.eku}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		doc := testDoc()
		sign(t, doc, "_sigs/all.json", key, []*x509.Certificate{leaf}, []string{"#spec", "bsp/**", "app/**", "_config/app/**", "oem/**"}, nil, false)
		_, err = v.Verify(marshal(t, doc))
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), "usage")):
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		glob, key string
		want      bool
	}{
		{"awconnect/**", "awconnect/run.json", true},
		{"awconnect/**", "awconnect/a/b", true},
		{"awconnect/**", "awconnect", true},
		{"awconnect/**", "awconnect2/run.json", false},
		{"_config/awconnect/**", "_config/awconnect/etc/x", true},
		{"awconnect/src.json", "awconnect/src.json", true},
		{"src.json", "awconnect/src.json", false},
		{"*.json", "a/b.json", false}, // '*' does not match '/'
		{"a/*.json", "a/b.json", true},
		{"a/*", "a/b/c", false},
		{"a/[!x]*", "a/b", true},
		{"a/[!x]*", "a/x", false},
		{"**", "a/b", false}, // upstream's reading: the empty pattern
		{"a?c", "abc", true},
		{"a?c", "a/c", false},
		{"a[", "a[", false}, // malformed: nothing
		// FNM_PATHNAME: a bracket expression matches no '/' either.
		{"a[^x]b", "a/b", false},
		{"a[/]b", "a/b", false},
		// dirname(3) does not clean the path: "app/." matches no key.
		{"app/./**", "app/run.json", false},
		{"x/../app/**", "app/run.json", false},
		{"app//**", "app/run.json", true},
	} {
		if got := globMatch(tc.glob, tc.key); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.glob, tc.key, got, tc.want)
		}
	}
}

func TestParseMode(t *testing.T) {
	for i, name := range modeNames {
		if m, err := ParseMode(name); err != nil || m != Mode(i) || m.String() != name {
			t.Errorf("%s: %v %v", name, m, err)
		}
	}
	if _, err := ParseMode("paranoid"); err == nil || !strings.Contains(err.Error(), "paranoid") {
		t.Errorf("an unknown mode: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add([]byte(`{"_sigs/a.json":{"#spec":"pvs@2","protected":"e30","signature":"AA"}}`))
	if data, err := os.ReadFile(filepath.Join("..", "testdata", "upstream-pvtx", "resources-awconnect.json")); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, m := range []Mode{Lenient, Strict} {
			// No trust store: every path up to the chain's check, the
			// parsing of what a revision brings, runs on each input;
			// the crypto after it, a library's, would cost the fuzzer
			// most of its executions.
			v := &Verifier{Mode: m}
			rep, err := v.Verify(data)
			var e *Error
			if err != nil && errors.As(err, &e) && len(e.Problems) == 0 {
				t.Errorf("a refusal with no problem")
			}
			if err == nil && m == Strict && len(rep.Uncovered) > 0 {
				t.Errorf("strict passed uncovered keys %v", rep.Uncovered)
			}
		}
	})
}

// A string is signed as it is written: Sign's output keeps "<", ">"
// and "&" as they came, and verifies.
func TestSignKeepsStringsAsWritten(t *testing.T) {
	ca, key := pvstest.NewCA(t, "ca"), pvstest.Key(t)
	state := []byte(`{"#spec":"pantavisor-service-system@1","app/notes.txt":"<a> & <b>"}`)
	signed, err := Sign(state, "_sigs/app.json", key, []*x509.Certificate{ca.Issue(t, "signer", key)}, []string{"app/**"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(signed), `"<a> & <b>"`) {
		t.Errorf("the string was rewritten: %s", signed)
	}
	if _, err := (&Verifier{Mode: Lenient, TrustStore: ca.Store(t)}).Verify(signed); err != nil {
		t.Errorf("Sign's own output: %v", err)
	}
}

// A state with thousands of failing signatures is refused with a message
// of a few lines: it goes into the 422's body and the log.
func TestErrorNamesTheFirstProblems(t *testing.T) {
	e := &Error{}
	for i := range 5000 {
		e.Problems = append(e.Problems, Problem{Key: fmt.Sprintf("_sigs/%d.json", i), Reason: "the signature does not match"})
	}
	msg := e.Error()
	if len(msg) > 2000 || !strings.Contains(msg, "_sigs/0.json") || !strings.HasSuffix(msg, "and 4990 more") {
		t.Errorf("%d bytes: %.300s…%s", len(msg), msg, msg[max(0, len(msg)-100):])
	}
}

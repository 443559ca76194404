package signature

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Mode is PV_SECUREBOOT_MODE.
type Mode int

const (
	Disabled Mode = iota
	Audit
	Lenient
	Strict
)

var modeNames = []string{"disabled", "audit", "lenient", "strict"}

func (m Mode) String() string {
	if int(m) < len(modeNames) && m >= 0 {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode reads a PV_SECUREBOOT_MODE value.
func ParseMode(s string) (Mode, error) {
	if i := slices.Index(modeNames, s); i >= 0 {
		return Mode(i), nil
	}
	return 0, fmt.Errorf("secure boot mode %q: want one of %s", s, strings.Join(modeNames, ", "))
}

// spec is the "#spec" of a signature.
const spec = "pvs@2"

// Verifier checks revisions' signatures.
type Verifier struct {
	Mode Mode
	// TrustStore is the PEM file of the certificates a signer's chain
	// must lead to; OEMTrustStore that of an OEM signer (OEMName).
	TrustStore, OEMTrustStore string
	// OEMName is PV_OEM_NAME: a signer whose certificate's common name
	// it is, covering no key of the BSP ("bsp/**") or of the OEM's own
	// container, is checked against OEMTrustStore. Empty: none.
	OEMName string
	// PublicKey is the PEM file of the key that verifies a signature
	// with no certificate chain (x5c).
	PublicKey string
	// Now is the time the certificates must be valid at (nil: now).
	Now func() time.Time
	// AnyTime checks each chain at its signer's start of validity, not
	// at Now: for a revision already on the device, at a boot or a
	// LOCAL_RUN. A device may have no clock to trust at boot (no RTC
	// before NTP: 1970), and a certificate that expired since the
	// upload must not make a device refuse the revision it runs.
	// Uploads are checked against the clock, unless it is before
	// ClockFloor.
	AnyTime bool
}

// ClockFloor is a time before which a device's clock is taken as not set
// (a board without RTC boots in 1970 and may take updates before any
// NTP): certificates are then checked as with AnyTime, since whatever
// the clock says of their validity would be wrong. No device runs this
// code before that day.
var ClockFloor = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Report is what a check found besides its verdict.
type Report struct {
	// Verified names the signature keys that verified.
	Verified []string
	// Uncovered names the keys no signature covers: in audit mode they
	// do not refuse the revision, and are to be reported.
	Uncovered []string
}

// Problem is one reason a revision is refused: Key is the signature's
// key, or empty for keys no signature covers.
type Problem struct {
	Key    string
	Reason string
}

func (p Problem) String() string {
	if p.Key == "" {
		return p.Reason
	}
	return p.Key + ": " + p.Reason
}

// Error lists every reason a revision is refused.
type Error struct {
	Problems []Problem
}

// Error names the first maxProblems problems, and how many more there
// are: every one goes into a 422's body and the log, and a state may
// carry thousands of failing signatures.
func (e *Error) Error() string {
	s := make([]string, 0, min(len(e.Problems), maxProblems)+1)
	for _, p := range e.Problems[:min(len(e.Problems), maxProblems)] {
		s = append(s, p.String())
	}
	if more := len(e.Problems) - maxProblems; more > 0 {
		s = append(s, fmt.Sprintf("and %d more", more))
	}
	return "signatures: " + strings.Join(s, "; ")
}

// maxProblems bounds the problems an Error names.
const maxProblems = 10

// maxUncovered bounds the keys a coverage problem names.
const maxUncovered = 10

// Verify checks the signatures of a revision's state JSON under v.Mode.
// It returns an *Error when the revision is refused; another error is a
// state that is no JSON object.
func (v *Verifier) Verify(stateJSON []byte) (Report, error) {
	var rep Report
	if v.Mode == Disabled {
		return rep, nil
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(stateJSON, &doc); err != nil {
		return rep, fmt.Errorf("signatures: the state: %w", err)
	}
	keys := slices.Sorted(maps.Keys(doc))
	covered := map[string]bool{}
	trust := stores{} // each trust store read once, however many signatures
	w := &budget{}
	for _, key := range keys {
		w.keyBytes += int64(len(key) + 1)
	}
	var problems []Problem
	for _, key := range keys {
		sig, ok := parseSignature(doc[key])
		if !ok {
			continue
		}
		if err := v.verifyOne(sig, doc, keys, covered, trust, w); err != nil {
			p := Problem{Key: key, Reason: "signature validation failed: " + err.Error()}
			if errors.Is(err, errTooMuch) {
				// First, as the state's refusal whatever the others
				// say (an Error names the first few); the next
				// signatures would only say it again.
				problems = append([]Problem{p}, problems...)
				break
			}
			problems = append(problems, p)
			continue
		}
		rep.Verified = append(rep.Verified, key)
	}
	if len(problems) > 0 {
		return rep, &Error{Problems: problems}
	}
	if v.Mode == Lenient {
		return rep, nil
	}
	for _, key := range keys {
		if !covered[key] && !strings.HasPrefix(key, "_sigs/") {
			rep.Uncovered = append(rep.Uncovered, key)
		}
	}
	if len(rep.Uncovered) > 0 && v.Mode == Strict {
		named := rep.Uncovered
		more := ""
		if len(named) > maxUncovered {
			named, more = named[:maxUncovered], fmt.Sprintf(" and %d more", len(rep.Uncovered)-maxUncovered)
		}
		return rep, &Error{Problems: []Problem{{Reason: fmt.Sprintf("state not fully covered by signatures: %s%s not covered",
			strings.Join(named, ", "), more)}}}
	}
	return rep, nil
}

// signature is one pvs@2 value.
type signature struct {
	Spec      string `json:"#spec"`
	Protected string `json:"protected"`
	Signature string `json:"signature"`
}

// parseSignature says whether a state value is a signature, as upstream
// takes any value with the pvs@2 spec and both fields for one.
func parseSignature(raw json.RawMessage) (signature, bool) {
	var s signature
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &s) != nil {
		return s, false
	}
	return s, s.Spec == spec && s.Protected != "" && s.Signature != ""
}

// header is a signature's protected header.
type header struct {
	Alg string   `json:"alg"`
	Typ string   `json:"typ"`
	X5c []string `json:"x5c"`
	PVS *struct {
		Include []string `json:"include"`
		Exclude []string `json:"exclude"`
	} `json:"pvs"`
}

// Bounds of the work a state's signatures ask of Verify (budget): its
// keys and globs are the sender's, and a few megabytes of them would
// otherwise keep a device matching for hours (a glob "*aaa…ab" against a
// key "aaa…a", or 200,000 globs against 200,000 keys) or writing
// gigabytes of payloads (thousands of signatures of one big value).
// Upstream's signed states cost some million steps of matching and
// payloads of their own size.
const (
	maxMatching = 1 << 28  // steps, globSet.cost: seconds on a slow core
	maxPayloads = 64 << 20 // bytes, all signatures' together
)

var errTooMuch = errors.New("more work than a device does")

// budget counts the work of one Verify.
type budget struct {
	keyBytes           int64 // the state's keys, each counted one more
	matching, payloads int64
}

func (v *Verifier) verifyOne(sig signature, doc map[string]json.RawMessage, keys []string, covered map[string]bool, trust stores, w *budget) error {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(sig.Protected, "="))
	if err != nil {
		return fmt.Errorf("protected header: %w", err)
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return fmt.Errorf("protected header: %w", err)
	}
	switch {
	case h.Typ != "PVS":
		return fmt.Errorf("protected header: typ %q, want PVS", h.Typ)
	case h.PVS == nil || h.PVS.Include == nil || h.PVS.Exclude == nil:
		return errors.New("protected header: no pvs include and exclude")
	}
	include, exclude := newGlobSet(h.PVS.Include), newGlobSet(h.PVS.Exclude)
	if w.matching += include.cost(len(keys), w.keyBytes) + exclude.cost(len(keys), w.keyBytes); w.matching > maxMatching {
		return fmt.Errorf("%w: the signatures' globs against the state's keys are more than %d steps of matching", errTooMuch, maxMatching)
	}
	in, named := selectKeys(keys, include, exclude)
	payload, err := payloadOf(doc, in)
	if err != nil {
		return err
	}
	if w.payloads += int64(len(payload)); w.payloads > maxPayloads {
		return fmt.Errorf("%w: the signatures' payloads are more than %d bytes", errTooMuch, maxPayloads)
	}
	signing := sig.Protected + "." + base64.RawURLEncoding.EncodeToString(payload)
	sigBytes, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(sig.Signature, "="))
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	key, oem, err := v.signerKey(h.X5c, v.oemSignable(in), trust)
	if err != nil {
		return err
	}
	if err := verifyJWS(h.Alg, key, []byte(signing), sigBytes); err != nil {
		return err
	}
	for _, key := range named {
		// An OEM signer may not sign the BSP nor the OEM's own
		// container: its exclude globs may not waive them either,
		// or strict mode would run a BSP that nobody signed.
		if oem && !v.oemSignable([]string{key}) {
			continue
		}
		covered[key] = true
	}
	return nil
}

// payloadOf is the signed payload of the keys in: a JSON object of each
// key, in order, with its value as pvr signs it.
func payloadOf(doc map[string]json.RawMessage, in []string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, key := range in {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := encodeJSON(key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		b.Write(k)
		b.WriteByte(':')
		raw := bytes.TrimSpace(doc[key])
		switch {
		case len(raw) > 0 && (raw[0] == '{' || raw[0] == '['):
			c, err := canonical(raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			b.Write(c)
		case len(raw) > 0 && raw[0] == '"':
			b.Write(raw) // as written, escapes and all
		default:
			// A number, true, false or null: quoted, as upstream
			// quotes every value that is no object or array.
			b.WriteByte('"')
			b.Write(raw)
			b.WriteByte('"')
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// canonical is raw with its objects' keys sorted and no white space, its
// numbers as written and no HTML escaping.
func canonical(raw []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	v, err := decodeOnce(d)
	if err != nil {
		return nil, err
	}
	return encodeJSON(v)
}

// decodeOnce reads d's next value, refusing an object with a key twice:
// decoding keeps one of its values, so that {"a":1,"a":2} and {"a":2}
// would be one payload, while the document is written on the device as
// it came, both values under one signature for its reader to choose.
func decodeOnce(d *json.Decoder) (any, error) {
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		m := map[string]any{}
		for d.More() {
			kt, err := d.Token()
			if err != nil {
				return nil, err
			}
			k, _ := kt.(string)
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("key %q appears more than once", k)
			}
			if m[k], err = decodeOnce(d); err != nil {
				return nil, err
			}
		}
		_, err := d.Token() // '}'
		return m, err
	case json.Delim('['):
		a := []any{}
		for d.More() {
			e, err := decodeOnce(d)
			if err != nil {
				return nil, err
			}
			a = append(a, e)
		}
		_, err := d.Token() // ']'
		return a, err
	}
	return tok, nil
}

// encodeJSON is v as compact JSON, maps' keys sorted, with no HTML
// escaping: "<", ">" and "&" stay as written.
func encodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// oemSignable says whether an OEM signer may sign keys: none of the BSP
// nor of the OEM's own container.
func (v *Verifier) oemSignable(keys []string) bool {
	if v.OEMName == "" {
		return false
	}
	for _, key := range keys {
		if globMatch("bsp/**", key) || globMatch(v.OEMName+"/**", key) {
			return false
		}
	}
	return true
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

package signature

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"slices"
)

// Sign adds to a state JSON the signature sigKey (e.g. "_sigs/app.json")
// of the keys that include and exclude select, as upstream's `pvr sig`
// makes it: RS256 for an RSA key, ES256, ES384 or ES512 for an ECDSA key
// on P-256, P-384 or P-521 (r and s side by side, as JWS writes them),
// and chain, the signer's certificate first, as x5c (none: a device
// verifies it with its public key). The state comes back compact, its
// keys sorted.
func Sign(stateJSON []byte, sigKey string, key crypto.Signer, chain []*x509.Certificate, include, exclude []string) ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(stateJSON, &doc); err != nil {
		return nil, fmt.Errorf("sign: the state: %w", err)
	}
	alg, hash, err := algOf(key.Public())
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	h := map[string]any{"alg": alg, "typ": "PVS", "pvs": map[string]any{
		"include": nonNil(include), "exclude": nonNil(exclude)}}
	if len(chain) > 0 {
		x5c := make([]string, len(chain))
		for i, c := range chain {
			x5c[i] = base64.StdEncoding.EncodeToString(c.Raw)
		}
		h["x5c"] = x5c
	}
	hb, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	protected := base64.RawURLEncoding.EncodeToString(hb)
	in, _ := selection(slices.Sorted(maps.Keys(doc)), include, exclude)
	payload, err := payloadOf(doc, in)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	d := hash.New()
	d.Write([]byte(protected + "." + base64.RawURLEncoding.EncodeToString(payload)))
	digest := d.Sum(nil)
	var sig []byte
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		sig, err = key.Sign(rand.Reader, digest, crypto.SHA256)
	case *ecdsa.PublicKey:
		sig, err = key.Sign(rand.Reader, digest, hash)
		if err == nil {
			sig, err = rawECDSA(sig, (k.Curve.Params().BitSize+7)/8)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	value, err := json.Marshal(map[string]string{"#spec": spec, "protected": protected,
		"signature": base64.RawURLEncoding.EncodeToString(sig)})
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	doc[sigKey] = value
	// No HTML escaping: a string's "<", ">" or "&" would come out as
	// \u003c..., which is not the text the payload was made of.
	out, err := encodeJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return out, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func algOf(pub crypto.PublicKey) (string, crypto.Hash, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RS256", crypto.SHA256, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", crypto.SHA256, nil
		case elliptic.P384():
			return "ES384", crypto.SHA384, nil
		case elliptic.P521():
			return "ES512", crypto.SHA512, nil
		}
	}
	return "", 0, fmt.Errorf("a %T key: want RSA or ECDSA on P-256, P-384 or P-521", pub)
}

// rawECDSA turns an ASN.1 DER ECDSA signature into r and s side by side,
// each size bytes.
func rawECDSA(der []byte, size int) ([]byte, error) {
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &rs); err != nil {
		return nil, fmt.Errorf("ECDSA signature: %w", err)
	}
	out := make([]byte, 2*size)
	rs.R.FillBytes(out[:size])
	rs.S.FillBytes(out[size:])
	return out, nil
}

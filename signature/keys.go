package signature

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"os"
)

// signerKey is the key that verifies a signature: that of the first
// certificate of x5c once its chain leads to the trust store (the OEM
// trust store for an OEM signer that may sign: oem), or without x5c the
// device's public key.
func (v *Verifier) signerKey(x5c []string, oemSignable bool, trust stores) (key crypto.PublicKey, oem bool, err error) {
	if len(x5c) == 0 {
		if v.PublicKey == "" {
			return nil, false, errors.New("no certificate chain (x5c), and no public key configured")
		}
		key, err := readPublicKey(v.PublicKey)
		return key, false, err
	}
	certs := make([]*x509.Certificate, len(x5c))
	for i, c := range x5c {
		der, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			return nil, false, fmt.Errorf("x5c certificate %d: %w", i, err)
		}
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return nil, false, fmt.Errorf("x5c certificate %d: %w", i, err)
		}
	}
	store := v.TrustStore
	if oemSignable && certs[0].Subject.CommonName == v.OEMName {
		store, oem = v.OEMTrustStore, true
	}
	roots, err := trust.read(store)
	if err != nil {
		return nil, false, err
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	at := v.now()
	if v.AnyTime || at.Before(ClockFloor) {
		at = certs[0].NotBefore
	}
	// Code signing, what upstream's signers' certificates say they are
	// for (or no extended key usage at all): upstream's check (mbedtls)
	// asks for none, so that a TLS certificate of a server or a device
	// that the same CA issued would sign revisions, and one device's key
	// would update them all.
	if ku := certs[0].KeyUsage; ku != 0 && ku&x509.KeyUsageDigitalSignature == 0 {
		return nil, false, fmt.Errorf("certificate %q: its key usage does not allow digital signatures", certs[0].Subject.CommonName)
	}
	_, err = certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}})
	if err != nil {
		return nil, false, fmt.Errorf("certificate %q against the trust store %s: %w", certs[0].Subject.CommonName, store, err)
	}
	return certs[0].PublicKey, oem, nil
}

// stores reads each trust store once per Verify, a state having as many
// signatures as it has containers.
type stores map[string]storeRead

type storeRead struct {
	pool *x509.CertPool
	err  error
}

func (s stores) read(path string) (*x509.CertPool, error) {
	r, ok := s[path]
	if !ok {
		r.pool, r.err = readTrustStore(path)
		s[path] = r
	}
	return r.pool, r.err
}

func readTrustStore(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, errors.New("no trust store configured")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trust store: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("trust store %s: no PEM certificate", path)
	}
	return pool, nil
}

func readPublicKey(path string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("public key %s: no PEM block", path)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return key, nil
}

// verifyJWS checks sig over signing with key for alg: RS256 is RSA
// PKCS #1 v1.5 with SHA-256; ES256, ES384 and ES512 are ECDSA with
// SHA-256, -384 and -512, the signature either as JWS writes it (r and s
// side by side) or in ASN.1 DER, which upstream's check reads.
func verifyJWS(alg string, key crypto.PublicKey, signing, sig []byte) error {
	var h hash.Hash
	switch alg {
	case "RS256", "ES256":
		h = sha256.New()
	case "ES384":
		h = sha512.New384()
	case "ES512":
		h = sha512.New()
	default:
		return fmt.Errorf("algorithm %q: want RS256, ES256, ES384 or ES512", alg)
	}
	h.Write(signing)
	digest := h.Sum(nil)
	switch k := key.(type) {
	case *rsa.PublicKey:
		if alg != "RS256" {
			return fmt.Errorf("an RSA key for %s", alg)
		}
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig); err != nil {
			return errors.New("the signature does not match")
		}
		return nil
	case *ecdsa.PublicKey:
		if alg == "RS256" {
			return errors.New("an ECDSA key for RS256")
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) == 2*size {
			r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
			if ecdsa.Verify(k, digest, r, s) {
				return nil
			}
		}
		if ecdsa.VerifyASN1(k, digest, sig) {
			return nil
		}
		return errors.New("the signature does not match")
	}
	return fmt.Errorf("a %T key is not supported", key)
}

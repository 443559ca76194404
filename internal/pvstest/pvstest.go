// Package pvstest makes the certificate authorities and signers that
// tests of revision signatures (package signature) need.
package pvstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority, valid from an hour ago to a day on.
type CA struct {
	Key  crypto.Signer
	Cert *x509.Certificate
}

// Key is a new P-256 key.
func Key(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// NewCA makes a certificate authority named cn.
func NewCA(tb testing.TB, cn string) CA {
	tb.Helper()
	key := Key(tb)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	return CA{key, create(tb, tmpl, tmpl, key.Public(), key)}
}

// Issue makes the certificate of a signer named cn, with key.
func (c CA) Issue(tb testing.TB, cn string, key crypto.Signer) *x509.Certificate {
	tb.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	return create(tb, tmpl, c.Cert, key.Public(), c.Key)
}

// PEM is the CA's certificate as a trust store holds it.
func (c CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
}

// Store writes the CA's certificate as a trust store in a temporary
// directory of tb, and returns its path.
func (c CA) Store(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "ca.crt")
	if err := os.WriteFile(path, c.PEM(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

func create(tb testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return cert
}

package proxy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// ForwardCA is tok's own certificate authority for the egress listener's
// forward-proxy mode: an app whose HTTPS_PROXY is tok opens a
// CONNECT tunnel to its provider's real host, and tok answers the TLS
// handshake with a certificate for that host signed by this CA, which the
// operator installs in the app's trust store (`tok ca new`). It is safe
// for concurrent use.
type ForwardCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	now  func() time.Time

	mu     sync.Mutex
	leaves map[string]*tls.Certificate // by host name
}

// Lifetimes of tok's CA and of the host certificates it signs.
const (
	forwardCALifetime   = 5 * 365 * 24 * time.Hour
	forwardLeafLifetime = 7 * 24 * time.Hour
	forwardLeafRenew    = 24 * time.Hour // a leaf with less left is signed anew
)

// NewForwardCA creates a CA key (ECDSA P-256) and a self-signed CA
// certificate, both PEM-encoded, for `tok ca new`. The CA may sign only
// server certificates for host names (a path length of 0).
func NewForwardCA() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ca key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "tok egress CA", Organization: []string{"tok"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(forwardCALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// LoadForwardCA reads a CA certificate and its PKCS #8 key (PEM), as
// `tok ca new` writes them.
func LoadForwardCA(certPEM, keyPEM []byte) (*ForwardCA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("egress CA: no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("egress CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("egress CA: the certificate is not a CA")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("egress CA: no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("egress CA key: %w", err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("egress CA key: not a signing key")
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("egress CA: the key does not match the certificate")
	}
	return &ForwardCA{cert: cert, key: key, now: time.Now, leaves: map[string]*tls.Certificate{}}, nil
}

// leaf returns a certificate for host signed by the CA, from the cache
// while it has a day left.
func (ca *ForwardCA) leaf(host string) (*tls.Certificate, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	now := ca.now()
	if c := ca.leaves[host]; c != nil && c.Leaf.NotAfter.Sub(now) > forwardLeafRenew {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(forwardLeafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	ca.leaves[host] = c
	return c, nil
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

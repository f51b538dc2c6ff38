package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testPKI is a CA with helpers to issue server and client certificates.
type testPKI struct {
	t    *testing.T
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	n    int64
}

func newTestPKI(t *testing.T, dir string) *testPKI {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tok test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{t: t, dir: dir, ca: ca, key: key, pool: x509.NewCertPool(), n: 1}
	p.pool.AddCert(ca)
	return p
}

// issue writes a certificate for cn (a server for 127.0.0.1 if server)
// and its key as PEM files and returns their paths and the tls pair.
func (p *testPKI) issue(name, cn string, server bool) (certFile, keyFile string, pair tls.Certificate) {
	p.n++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.n), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	certFile, keyFile = filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	pair, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		p.t.Fatal(err)
	}
	return certFile, keyFile, pair
}

func (p *testPKI) caFile() string {
	f := filepath.Join(p.dir, "ca.crt")
	os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ca.Raw}), 0o600)
	return f
}

// serveTLS runs e's server on loopback listeners and returns their URLs.
func serveTLS(t *testing.T, e *testEnv, names ...string) map[string]string {
	ls, urls := map[string]net.Listener{}, map[string]string{}
	for _, name := range names {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls[name] = l
		scheme := "http://"
		if _, ok := e.srv.opts.TLS[name]; ok {
			scheme = "https://"
		}
		urls[name] = scheme + l.Addr().String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ls) }()
	t.Cleanup(func() { cancel(); <-done })
	return urls
}

func tlsClient(roots *x509.CertPool, certs ...tls.Certificate) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
}

func TestTLSListeners(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	cert, key, _ := pki.issue("server", "tok", true)
	e := newTestEnv(t, nil, func(o *Options) {
		o.TLS = map[string]ListenerTLS{ListenerPublic: {CertFile: cert, KeyFile: key}, ListenerAuth: {CertFile: cert, KeyFile: key}}
	})
	urls := serveTLS(t, e, ListenerPublic, ListenerAuth)
	c := tlsClient(pki.pool)
	r := do(t, c, "POST", urls[ListenerPublic]+"/handle", "application/json", `{"pan_number":"`+seedPAN+`"}`)
	if r.StatusCode != 200 {
		t.Fatalf("POST /handle over TLS = %d", r.StatusCode)
	}
	// Session cookies are Secure on a TLS listener.
	r = do(t, c, "POST", urls[ListenerAuth]+"/login", "application/json", `{"bank_coordinates":"cih","secret":"`+testSecrets["cih"]+`"}`)
	if r.StatusCode != 200 || len(r.Cookies()) != 1 || !r.Cookies()[0].Secure {
		t.Errorf("login over TLS = %d, cookies %v; want one Secure cookie", r.StatusCode, r.Cookies())
	}
	// Plain HTTP to a TLS listener gets nothing useful.
	plain := "http" + urls[ListenerPublic][len("https"):]
	if resp, err := http.Post(plain+"/handle", "application/json", nil); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP was served on a TLS listener")
	}

	// Reload re-reads the files: a new certificate is served without a restart.
	cert2, key2, pair2 := pki.issue("server2", "tok-renewed", true)
	os.Rename(cert2, cert)
	os.Rename(key2, key)
	opts := e.srv.opts
	if err := e.srv.Reload(opts); err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", urls[ListenerPublic][len("https://"):], &tls.Config{RootCAs: pki.pool})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(pair2.Leaf.SerialNumber) != 0 {
		t.Errorf("after reload the listener serves certificate %v, want the renewed %v", got, pair2.Leaf.SerialNumber)
	}
}

func TestMTLSAuth(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	cert, key, _ := pki.issue("server", "tok", true)
	_, _, cih := pki.issue("cih", "cih", false)
	_, _, viewer := pki.issue("viewer", "viewer", false)
	_, _, stranger := newTestPKI(t, t.TempDir()).issue("x", "cih", false) // right CN, wrong CA

	for _, mode := range []ClientAuth{ClientAuthCertificate, ClientAuthBoth} {
		t.Run(string(mode), func(t *testing.T) {
			e := newTestEnv(t, nil, func(o *Options) {
				o.TLS = map[string]ListenerTLS{ListenerAuth: {CertFile: cert, KeyFile: key, ClientCAFile: pki.caFile(), ClientAuth: mode}}
			})
			tok := e.handle(seedPAN)
			urls := serveTLS(t, e, ListenerAuth)
			me := urls[ListenerAuth] + "/@me?token=" + tok
			// No certificate, or one from another CA: the handshake fails.
			for _, c := range []*http.Client{tlsClient(pki.pool), tlsClient(pki.pool, stranger)} {
				if resp, err := c.Get(me); err == nil {
					resp.Body.Close()
					t.Errorf("request without a trusted client certificate got %d", resp.StatusCode)
				}
			}
			c := tlsClient(pki.pool, cih)
			if mode == ClientAuthCertificate {
				r := do(t, c, "GET", me, "", "")
				if r.StatusCode != 200 || r.json(t)["pan"] != seedPAN {
					t.Errorf("GET /@me with cih's certificate = %d %s", r.StatusCode, r.body)
				}
				wantError(t, do(t, c, "POST", urls[ListenerAuth]+"/login", "application/json", `{"bank_coordinates":"cih","secret":"x"}`), 404, "not_found")
				r = do(t, tlsClient(pki.pool, viewer), "GET", me, "", "")
				if r.StatusCode != 200 || r.json(t)["pan"] != nil {
					t.Errorf("viewer's certificate: %d %s, want masked only", r.StatusCode, r.body)
				}
				return
			}
			// both: the session's client must be the certificate's.
			wantError(t, do(t, c, "POST", urls[ListenerAuth]+"/login", "application/json",
				`{"bank_coordinates":"viewer","secret":"`+testSecrets["viewer"]+`"}`), 401, "certificate_mismatch")
			wantError(t, do(t, c, "GET", me, "", ""), 401, "unauthenticated")
			r := do(t, c, "POST", urls[ListenerAuth]+"/login", "application/json", `{"bank_coordinates":"cih","secret":"`+testSecrets["cih"]+`"}`)
			if r.StatusCode != 200 {
				t.Fatalf("login as cih with cih's certificate = %d %s", r.StatusCode, r.body)
			}
			if r := do(t, c, "GET", me, "", ""); r.StatusCode != 200 {
				t.Errorf("GET /@me with session and certificate = %d", r.StatusCode)
			}
			// The same session presented with viewer's certificate is refused.
			other := tlsClient(pki.pool, viewer)
			other.Jar = c.Jar
			wantError(t, do(t, other, "GET", me, "", ""), 401, "certificate_mismatch")
		})
	}
}

package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// ClientAuth is how the auth listener learns which client calls it
// (tls.auth.client_auth). The zero value is [ClientAuthSession].
type ClientAuth string

// Client authentication modes of the auth listener.
const (
	ClientAuthSession     ClientAuth = "session"     // log in, then the session cookie (default)
	ClientAuthCertificate ClientAuth = "certificate" // the verified client certificate's CN names the client
	ClientAuthBoth        ClientAuth = "both"        // a session whose client is the certificate's CN
)

// UnmarshalText sets c from its config spelling; empty is the default.
func (c *ClientAuth) UnmarshalText(text []byte) error {
	switch v := ClientAuth(text); v {
	case "", ClientAuthSession, ClientAuthCertificate, ClientAuthBoth:
		*c = v
		return nil
	}
	return fmt.Errorf("%q: want session, certificate or both", text)
}

// ListenerTLS is one listener's TLS material, read when the Server is built
// (and so again at every Reload).
type ListenerTLS struct {
	CertFile, KeyFile string
	// ClientCAFile (auth listener): client certificates signed by a CA in
	// this bundle are required.
	ClientCAFile string
	// ClientAuth (auth listener): ClientAuthSession if empty.
	ClientAuth ClientAuth
}

// tlsConfigs builds a tls.Config per listener that has TLS files.
func tlsConfigs(m map[string]ListenerTLS) (map[string]*tls.Config, error) {
	out := map[string]*tls.Config{}
	var errs []error
	for name, lt := range m {
		cert, err := tls.LoadX509KeyPair(lt.CertFile, lt.KeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("tls %s: %w", name, err))
			continue
		}
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if lt.ClientCAFile != "" {
			pem, err := os.ReadFile(lt.ClientCAFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("tls %s: client CA: %w", name, err))
				continue
			}
			cfg.ClientCAs = x509.NewCertPool()
			if !cfg.ClientCAs.AppendCertsFromPEM(pem) {
				errs = append(errs, fmt.Errorf("tls %s: client CA file %s holds no PEM certificate", name, lt.ClientCAFile))
				continue
			}
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		switch lt.ClientAuth {
		case "", ClientAuthSession:
		case ClientAuthCertificate, ClientAuthBoth:
			if name != ListenerAuth || cfg.ClientCAs == nil {
				errs = append(errs, fmt.Errorf("tls %s: client_auth %s needs the auth listener and a client CA", name, lt.ClientAuth))
			}
		default:
			errs = append(errs, fmt.Errorf("tls %s: unknown client_auth %q", name, lt.ClientAuth))
		}
		out[name] = cfg
	}
	return out, errors.Join(errs...)
}

// tlsListener serves TLS on nl with the configuration of the generation
// live at each handshake, so a Reload (SIGHUP) swaps certificates and
// client CAs without dropping the listener.
func (s *Server) tlsListener(name string, nl net.Listener) net.Listener {
	return tls.NewListener(nl, &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			if cfg := s.live.Load().tlsConf[name]; cfg != nil {
				return cfg, nil
			}
			return nil, fmt.Errorf("tls for listener %s is no longer configured", name)
		},
	})
}

package cckmclient

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"
)

// newTransport returns the one transport a Client uses: TLS 1.2 or later,
// verified against the system roots plus CAFile, and enough idle
// connections to CipherTrust Manager for MaxConnsPerHost concurrent calls.
func newTransport(cfg Config, base *url.URL) (*http.Transport, error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CCKM_CA_FILE: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CCKM_CA_FILE: %s holds no PEM certificate", cfg.CAFile)
		}
		tlsConfig.RootCAs = pool
	}
	if cfg.InsecureSkipVerify {
		tlsConfig.InsecureSkipVerify = true
	}
	if base.Scheme == "http" && (cfg.CAFile != "" || cfg.InsecureSkipVerify) {
		return nil, fmt.Errorf("CCKM_URL %s is plain http: TLS settings do not apply", base.Redacted())
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	transport.MaxIdleConns = max(100, cfg.MaxConnsPerHost)
	transport.MaxIdleConnsPerHost = cfg.MaxConnsPerHost
	transport.IdleConnTimeout = 90 * time.Second
	transport.ResponseHeaderTimeout = 0 // each attempt's context bounds it
	return transport, nil
}

package auth

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"
)

// DefaultRequestTimeout bounds every UAA and Cloud Controller call when the
// config does not set request_timeout (upstream rendered 5 and ignored it;
// its calls could hang forever).
const DefaultRequestTimeout = 5 * time.Second

// ClientTLSConfig returns the TLS settings of the UAA and CC clients: TLS
// 1.2 or later, server certificates verified against the union of the PEM
// files given (empty or whitespace-only files are skipped, as upstream), or
// against the system roots when no file holds a certificate; or no
// verification at all when skipVerify is set (skip_ssl_validation).
func ClientTLSConfig(skipVerify bool, caFiles ...string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if skipVerify {
		c.InsecureSkipVerify = true //nolint:gosec // operator's explicit choice (skip_ssl_validation)
		return c, nil
	}
	pool := x509.NewCertPool()
	found := false
	for _, f := range caFiles {
		if f == "" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		if len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("CA file %s: no PEM certificates", f)
		}
		found = true
	}
	if found {
		c.RootCAs = pool
	}
	return c, nil
}

// NewHTTPClient returns the client shared by the UAA and CC clients: one
// connection pool, every call bounded by timeout (DefaultRequestTimeout when
// timeout <= 0), no cookie jar, and no redirects followed (neither UAA's
// check_token nor CC's API redirects; following one would replay the
// credentials elsewhere).
func NewHTTPClient(tlsConfig *tls.Config, timeout time.Duration) *http.Client {
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	transport.MaxIdleConnsPerHost = 16
	return &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

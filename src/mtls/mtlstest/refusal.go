package mtlstest

import (
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/netman-release/netman/src/mtls"
)

// CheckMutualTLS is the contract every netman mTLS server keeps: a GET of
// url succeeds with the test client certificate on TLS 1.3 and 1.2, and is
// refused with a client certificate from another CA, without a client
// certificate, on TLS 1.1, and on TLS 1.2 with a suite upstream does not
// allow. serverName is the name in the server certificate.
func CheckMutualTLS(t *testing.T, url, serverName string) {
	t.Helper()
	pem := Material(t)
	good, err := mtls.ClientConfigFromPEM(pem.ClientCert, pem.ClientKey, pem.CA, mtls.WithServerName(serverName))
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := mtls.ClientConfigFromPEM(pem.OtherClientCert, pem.OtherClientKey, pem.CA, mtls.WithServerName(serverName))
	if err != nil {
		t.Fatal(err)
	}
	noCert := good.Clone()
	noCert.Certificates = nil
	tls11 := good.Clone()
	tls11.MinVersion, tls11.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	wrongSuite := good.Clone()
	wrongSuite.MaxVersion = tls.VersionTLS12
	wrongSuite.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}
	tls12 := good.Clone()
	tls12.MaxVersion = tls.VersionTLS12

	tests := []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"good client", good, true},
		{"good client on TLS 1.2", tls12, true},
		{"client certificate from another CA", otherCA, false},
		{"no client certificate", noCert, false},
		{"TLS 1.1", tls11, false},
		{"TLS 1.2 with another cipher suite", wrongSuite, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tt.cfg}}
			resp, err := c.Get(url)
			if resp != nil {
				resp.Body.Close()
			}
			if tt.ok && (err != nil || resp.StatusCode != http.StatusOK) {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && err == nil {
				t.Fatalf("accepted with status %d", resp.StatusCode)
			}
		})
	}
}

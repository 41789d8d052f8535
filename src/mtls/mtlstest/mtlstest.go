// Package mtlstest provides certificates for tests: a CA with a server and a client key pair, and an
// unrelated second CA with a client pair that every netman server must refuse. The material is generated
// once per test binary (RSA keys are slow) and written to each test's own temporary directory.
package mtlstest

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/netman-release/netman/src/mtls"
)

// ServerHosts are the SANs of the test server certificate: loopback, and the upstream service names so
// that clients can dial 127.0.0.1 with mtls.WithServerName(mtls.SilkControllerHost) and the like.
var ServerHosts = []string{
	"127.0.0.1", "::1", "localhost",
	mtls.SilkControllerHost, mtls.PolicyServerHost, mtls.ServiceDiscoveryControllerHost,
}

// PEM is the generated material.
type PEM struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey []byte
	// OtherCA is unrelated to CA; OtherClientCert is signed by it.
	OtherCA, OtherClientCert, OtherClientKey []byte
}

// Files are the paths of the material written into a test's temporary directory.
type Files struct {
	Dir                                                  string
	CAFile, ServerCert, ServerKey, ClientCert, ClientKey string
	OtherCAFile, OtherClientCert, OtherClientKey         string
}

var (
	once     sync.Once
	material PEM
	ca       *mtls.CA
	genErr   error
)

func generate() {
	ca, genErr = mtls.NewCA("netman-test-ca")
	if genErr != nil {
		return
	}
	other, err := mtls.NewCA("netman-other-ca")
	if err != nil {
		genErr = err
		return
	}
	material.CA, material.OtherCA = ca.CertPEM(), other.CertPEM()
	if material.ServerCert, material.ServerKey, genErr = ca.Issue(mtls.SilkControllerHost, ServerHosts, mtls.Server); genErr != nil {
		return
	}
	if material.ClientCert, material.ClientKey, genErr = ca.Issue("silk-daemon", nil, mtls.Client); genErr != nil {
		return
	}
	material.OtherClientCert, material.OtherClientKey, genErr = other.Issue("silk-daemon", nil, mtls.Client)
}

// CA returns the shared test CA, to issue further certificates that the Files' server trusts.
func CA(t testing.TB) *mtls.CA {
	t.Helper()
	once.Do(generate)
	if genErr != nil {
		t.Fatalf("generate test certificates: %v", genErr)
	}
	return ca
}

// Material returns a copy of the shared PEM material.
func Material(t testing.TB) PEM {
	t.Helper()
	CA(t)
	return PEM{
		CA: bytes.Clone(material.CA), ServerCert: bytes.Clone(material.ServerCert), ServerKey: bytes.Clone(material.ServerKey),
		ClientCert: bytes.Clone(material.ClientCert), ClientKey: bytes.Clone(material.ClientKey),
		OtherCA: bytes.Clone(material.OtherCA), OtherClientCert: bytes.Clone(material.OtherClientCert),
		OtherClientKey: bytes.Clone(material.OtherClientKey),
	}
}

// NewTestFiles writes the material into t.TempDir() and returns the paths.
func NewTestFiles(t testing.TB) *Files {
	t.Helper()
	m := Material(t)
	dir := t.TempDir()
	f := &Files{Dir: dir}
	write := func(name string, data []byte) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
		return path
	}
	f.CAFile = write("ca.crt", m.CA)
	f.ServerCert = write("server.crt", m.ServerCert)
	f.ServerKey = write("server.key", m.ServerKey)
	f.ClientCert = write("client.crt", m.ClientCert)
	f.ClientKey = write("client.key", m.ClientKey)
	f.OtherCAFile = write("other-ca.crt", m.OtherCA)
	f.OtherClientCert = write("other-client.crt", m.OtherClientCert)
	f.OtherClientKey = write("other-client.key", m.OtherClientKey)
	return f
}

// ServerConfig is mtls.ServerConfig over the files, failing the test on error.
func (f *Files) ServerConfig(t testing.TB, opts ...mtls.Option) *tls.Config {
	t.Helper()
	cfg, err := mtls.ServerConfig(f.ServerCert, f.ServerKey, f.CAFile, opts...)
	if err != nil {
		t.Fatalf("server TLS config: %v", err)
	}
	return cfg
}

// ClientConfig is mtls.ClientConfig over the files, failing the test on error.
func (f *Files) ClientConfig(t testing.TB, opts ...mtls.Option) *tls.Config {
	t.Helper()
	cfg, err := mtls.ClientConfig(f.ClientCert, f.ClientKey, f.CAFile, opts...)
	if err != nil {
		t.Fatalf("client TLS config: %v", err)
	}
	return cfg
}

package mtls_test

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
)

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("no CERTIFICATE block in %q", certPEM)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIssue(t *testing.T) {
	ca := mtlstest.CA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())

	type cert struct {
		CommonName string
		DNSNames   []string
		IPs        []string
		EKU        []x509.ExtKeyUsage
	}
	tests := []struct {
		name   string
		cn     string
		hosts  []string
		usage  mtls.Usage
		want   cert
		verify x509.ExtKeyUsage
	}{
		{
			name: "server with names and IPs", cn: mtls.SilkControllerHost, usage: mtls.Server,
			hosts: []string{mtls.SilkControllerHost, "127.0.0.1", "localhost", "::1", "*.example.com"},
			want: cert{CommonName: mtls.SilkControllerHost, DNSNames: []string{mtls.SilkControllerHost, "localhost", "*.example.com"},
				IPs: []string{"127.0.0.1", "::1"}, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
			verify: x509.ExtKeyUsageServerAuth,
		},
		{
			name: "client without hosts", cn: "silk-daemon", usage: mtls.Client,
			want:   cert{CommonName: "silk-daemon", EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
			verify: x509.ExtKeyUsageClientAuth,
		},
		{
			name: "both", cn: "peer", hosts: []string{"10.0.0.1"}, usage: mtls.Both,
			want:   cert{CommonName: "peer", IPs: []string{"10.0.0.1"}, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
			verify: x509.ExtKeyUsageClientAuth,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.Issue(tt.cn, tt.hosts, tt.usage)
			if err != nil {
				t.Fatal(err)
			}
			c := parseCert(t, certPEM)
			got := cert{CommonName: c.Subject.CommonName, DNSNames: c.DNSNames, EKU: c.ExtKeyUsage}
			for _, ip := range c.IPAddresses {
				got.IPs = append(got.IPs, ip.String())
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("certificate (-want +got):\n%s", diff)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{tt.verify}}); err != nil {
				t.Errorf("does not verify against the CA: %v", err)
			}
			if c.IsCA {
				t.Error("leaf is a CA")
			}
			if c.NotAfter.After(ca.Certificate().NotAfter) || c.NotAfter.Before(time.Now().Add(300*24*time.Hour)) {
				t.Errorf("NotAfter %v: want about a year, not past the CA's %v", c.NotAfter, ca.Certificate().NotAfter)
			}
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatalf("key pair: %v", err)
			}
			if k, ok := pair.PrivateKey.(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
				t.Errorf("key is %T, want RSA-2048 (the upstream ECDHE_RSA suite needs RSA server keys)", pair.PrivateKey)
			}
		})
	}
}

func TestIssueRandomSerials(t *testing.T) {
	m := mtlstest.Material(t)
	serials := map[string]bool{}
	for _, p := range [][]byte{m.CA, m.ServerCert, m.ClientCert, m.OtherCA, m.OtherClientCert} {
		s := parseCert(t, p).SerialNumber
		if s.Sign() <= 0 || serials[s.String()] {
			t.Errorf("serial %v is not positive and unique", s)
		}
		serials[s.String()] = true
	}
}

func TestIssueErrors(t *testing.T) {
	ca := mtlstest.CA(t)
	tests := []struct {
		name  string
		cn    string
		hosts []string
		usage mtls.Usage
		want  string
	}{
		{"no usage", "x", []string{"x"}, 0, "invalid usage"},
		{"unknown usage", "x", []string{"x"}, 8, "invalid usage"},
		{"server without hosts", "x", nil, mtls.Server, "a server certificate needs at least one host"},
		{"nothing to name", "", nil, mtls.Client, "neither a common name nor hosts"},
		{"empty host", "x", []string{""}, mtls.Server, `host "" is neither`},
		{"URL host", "x", []string{"https://x:443"}, mtls.Server, `host "https://x:443" is neither`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ca.Issue(tt.cn, tt.hosts, tt.usage)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Issue error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNewCA(t *testing.T) {
	ca, err := mtls.NewCA("netman-ca")
	if err != nil {
		t.Fatal(err)
	}
	c := parseCert(t, ca.CertPEM())
	if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 || c.Subject.CommonName != "netman-ca" {
		t.Errorf("CA certificate: IsCA %v, KeyUsage %v, CN %q", c.IsCA, c.KeyUsage, c.Subject.CommonName)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if _, err := mtls.NewCA(""); err == nil {
		t.Error("NewCA(\"\") succeeded")
	}
}

func TestCAFilesRoundTrip(t *testing.T) {
	ca, err := mtls.NewCA("netman-ca")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caCert, caKey, err := mtls.WriteKeyPair(dir, "ca", ca.CertPEM(), ca.KeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := mtls.LoadCA(caCert, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Certificate().Equal(ca.Certificate()) {
		t.Error("loaded CA differs")
	}

	// A certificate issued by the reloaded CA works in a handshake with the original CA's certificate.
	serverCert, serverKey, err := loaded.WriteFiles(filepath.Join(dir, "server"), "server", "s", []string{"127.0.0.1"}, mtls.Server)
	if err != nil {
		t.Fatal(err)
	}
	clientCert, clientKey, err := ca.WriteFiles(filepath.Join(dir, "client"), "client", "c", nil, mtls.Client)
	if err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{caCert: 0o644, caKey: 0o600, serverCert: 0o644, serverKey: 0o600, clientCert: 0o644, clientKey: 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", path, st.Mode().Perm(), mode)
		}
	}
	serverCfg, err := mtls.ServerConfig(serverCert, serverKey, caCert)
	if err != nil {
		t.Fatal(err)
	}
	clientCfg, err := mtls.ClientConfig(clientCert, clientKey, caCert)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, serverCfg)
	if _, err := dial(srv.addr, clientCfg); err != nil {
		t.Fatalf("dial: %v", err)
	}
	if err := srv.serverResult(t); err != nil {
		t.Fatalf("server: %v", err)
	}
}

func TestLoadCAErrors(t *testing.T) {
	f := mtlstest.NewTestFiles(t)
	m := mtlstest.Material(t)
	dir := t.TempDir()
	twoCerts := filepath.Join(dir, "two.crt")
	if err := os.WriteFile(twoCerts, append(m.CA, m.OtherCA...), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.key")
	tests := []struct {
		name      string
		cert, key string
		want      string
	}{
		{"leaf is not a CA", f.ServerCert, f.ServerKey, "load CA " + f.ServerCert + `: certificate "silk-controller.service.cf.internal" is not a CA`},
		{"missing key", f.CAFile, missing, "load CA " + missing + ": unreadable"},
		{"bundle", twoCerts, f.ServerKey, "load CA " + twoCerts + ": holds 2 certificates, want exactly one"},
		{"key of another CA", f.CAFile, f.ClientKey, "load CA " + f.CAFile + ", " + f.ClientKey + ": private key does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mtls.LoadCA(tt.cert, tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadCA error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestUsageString(t *testing.T) {
	got := []string{mtls.Server.String(), mtls.Client.String(), mtls.Both.String(), mtls.Usage(0).String()}
	want := []string{"server", "client", "server+client", "Usage(0)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

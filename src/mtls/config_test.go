package mtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
)

// tlsServer accepts on loopback, completes a handshake per connection, answers "ok" and reports the
// server-side handshake result, so that tests can tell that the server (not the client) refused.
type tlsServer struct {
	addr    string
	results chan error
}

func startServer(t *testing.T, cfg *tls.Config) *tlsServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &tlsServer{addr: ln.Addr().String(), results: make(chan error, 16)}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				tc := tls.Server(conn, cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				err := tc.HandshakeContext(ctx)
				if err == nil {
					_, err = tc.Write([]byte("ok"))
				}
				s.results <- err
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return s
}

// serverResult waits for the server's verdict on the last connection.
func (s *tlsServer) serverResult(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.results:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("server reported no handshake result")
		return nil
	}
}

// dial connects and reads the server's "ok": in TLS 1.3 a client finishes its handshake before the
// server has checked the client certificate, so only the read shows a refusal.
func dial(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	tc := conn.(*tls.Conn)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(tc, buf); err != nil {
		return tc.ConnectionState(), err
	}
	if string(buf) != "ok" {
		return tc.ConnectionState(), errors.New("unexpected reply " + string(buf))
	}
	return tc.ConnectionState(), nil
}

func TestServerConfigHandshakes(t *testing.T) {
	f := mtlstest.NewTestFiles(t)
	srv := startServer(t, f.ServerConfig(t))

	// A Go client sends no certificate that the server's CertificateRequest does not list as acceptable;
	// force it, as a non-Go client might, so that the server has to verify and refuse it.
	otherPair, err := tls.LoadX509KeyPair(f.OtherClientCert, f.OtherClientKey)
	if err != nil {
		t.Fatal(err)
	}
	otherClient := f.ClientConfig(t)
	otherClient.Certificates = nil
	otherClient.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &otherPair, nil }

	tests := []struct {
		name    string
		client  func() *tls.Config
		version uint16 // negotiated, when accepted
		cipher  uint16 // negotiated, when accepted
		refused string // substring of the server's handshake error; "" means accepted
	}{
		{
			name:    "good client negotiates TLS 1.3",
			client:  func() *tls.Config { return f.ClientConfig(t) },
			version: tls.VersionTLS13,
			cipher:  tls.TLS_AES_128_GCM_SHA256,
		},
		{
			name: "good client limited to TLS 1.2 gets the one upstream suite",
			client: func() *tls.Config {
				c := f.ClientConfig(t)
				c.MaxVersion = tls.VersionTLS12
				return c
			},
			version: tls.VersionTLS12,
			cipher:  tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		},
		{
			name:    "client certificate from another CA",
			client:  func() *tls.Config { return otherClient.Clone() },
			refused: "certificate signed by unknown authority",
		},
		{
			name: "client certificate from another CA over TLS 1.2",
			client: func() *tls.Config {
				c := otherClient.Clone()
				c.MaxVersion = tls.VersionTLS12
				return c
			},
			refused: "certificate signed by unknown authority",
		},
		{
			name: "no client certificate",
			client: func() *tls.Config {
				c := f.ClientConfig(t)
				c.Certificates = nil
				return c
			},
			refused: "client didn't provide a certificate",
		},
		{
			name: "client limited to TLS 1.1",
			client: func() *tls.Config {
				c := f.ClientConfig(t)
				c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
				return c
			},
			refused: "unsupported versions",
		},
		{
			name: "TLS 1.2 client offering only AES-256-GCM",
			client: func() *tls.Config {
				c := f.ClientConfig(t)
				c.MaxVersion = tls.VersionTLS12
				c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}
				return c
			},
			refused: "no cipher suite supported by both client and server",
		},
		{
			name: "TLS 1.2 client offering only ChaCha20",
			client: func() *tls.Config {
				c := f.ClientConfig(t)
				c.MaxVersion = tls.VersionTLS12
				c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}
				return c
			},
			refused: "no cipher suite supported by both client and server",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, clientErr := dial(srv.addr, tt.client())
			serverErr := srv.serverResult(t)
			if tt.refused == "" {
				if clientErr != nil || serverErr != nil {
					t.Fatalf("handshake failed: client: %v; server: %v", clientErr, serverErr)
				}
				if state.Version != tt.version || state.CipherSuite != tt.cipher {
					t.Errorf("negotiated %s %s, want %s %s", tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite),
						tls.VersionName(tt.version), tls.CipherSuiteName(tt.cipher))
				}
				return
			}
			if clientErr == nil {
				t.Errorf("client got through, want refusal")
			}
			if serverErr == nil || !strings.Contains(serverErr.Error(), tt.refused) {
				t.Errorf("server handshake error = %v, want one containing %q", serverErr, tt.refused)
			}
		})
	}
}

func TestClientConfigVerifiesServer(t *testing.T) {
	f := mtlstest.NewTestFiles(t)
	srv := startServer(t, f.ServerConfig(t))

	tests := []struct {
		name    string
		opts    []mtls.Option
		ca      string
		wantErr string // substring of the client error
	}{
		{name: "dialled IP is a SAN"},
		{name: "server name override to an upstream name", opts: []mtls.Option{mtls.WithServerName(mtls.SilkControllerHost)}},
		{name: "server name not in the certificate", opts: []mtls.Option{mtls.WithServerName("other.service.cf.internal")}, wantErr: "not other.service.cf.internal"},
		{name: "server from an untrusted CA", ca: f.OtherCAFile, wantErr: "unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := f.CAFile
			if tt.ca != "" {
				ca = tt.ca
			}
			cfg, err := mtls.ClientConfig(f.ClientCert, f.ClientKey, ca, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			_, err = dial(srv.addr, cfg)
			srv.serverResult(t)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("dial: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("dial error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestServerOptions(t *testing.T) {
	f := mtlstest.NewTestFiles(t)
	tls12 := func(c *tls.Config, suites ...uint16) *tls.Config {
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = suites
		return c
	}
	tests := []struct {
		name     string
		opts     []mtls.Option
		client   *tls.Config
		accepted bool
	}{
		{
			name:     "internal service defaults accept AES-256-GCM",
			opts:     []mtls.Option{mtls.InternalServiceDefaults()},
			client:   tls12(f.ClientConfig(t), tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
			accepted: true,
		},
		{
			name:     "internal service defaults accept AES-128-GCM",
			opts:     []mtls.Option{mtls.InternalServiceDefaults()},
			client:   tls12(f.ClientConfig(t), tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
			accepted: true,
		},
		{
			name: "internal service defaults refuse X25519-only clients",
			opts: []mtls.Option{mtls.InternalServiceDefaults()},
			client: func() *tls.Config {
				c := f.ClientConfig(t)
				c.CurvePreferences = []tls.CurveID{tls.X25519}
				return c
			}(),
		},
		{
			name:     "explicit cipher suites",
			opts:     []mtls.Option{mtls.WithCipherSuites(tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)},
			client:   tls12(f.ClientConfig(t), tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
			accepted: true,
		},
		{
			name:     "one-way TLS accepts clients without certificates",
			opts:     []mtls.Option{mtls.WithoutClientAuth()},
			client:   &tls.Config{RootCAs: f.ClientConfig(t).RootCAs, MinVersion: tls.VersionTLS12},
			accepted: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, f.ServerConfig(t, tt.opts...))
			_, clientErr := dial(srv.addr, tt.client)
			serverErr := srv.serverResult(t)
			if got := clientErr == nil && serverErr == nil; got != tt.accepted {
				t.Fatalf("accepted = %v, want %v (client: %v; server: %v)", got, tt.accepted, clientErr, serverErr)
			}
		})
	}
}

func TestConfigFields(t *testing.T) {
	f := mtlstest.NewTestFiles(t)
	type fields struct {
		MinVersion, MaxVersion uint16
		CipherSuites           []uint16
		CurvePreferences       []tls.CurveID
		ClientAuth             tls.ClientAuthType
		HasClientCAs, HasRoots bool
		ServerName             string
	}
	of := func(c *tls.Config) fields {
		return fields{c.MinVersion, c.MaxVersion, c.CipherSuites, c.CurvePreferences, c.ClientAuth, c.ClientCAs != nil, c.RootCAs != nil, c.ServerName}
	}
	server := func(opts ...mtls.Option) (*tls.Config, error) {
		return mtls.ServerConfig(f.ServerCert, f.ServerKey, f.CAFile, opts...)
	}
	client := func(opts ...mtls.Option) (*tls.Config, error) {
		return mtls.ClientConfig(f.ClientCert, f.ClientKey, f.CAFile, opts...)
	}
	tests := []struct {
		name  string
		build func(...mtls.Option) (*tls.Config, error)
		opts  []mtls.Option
		want  fields
	}{
		{
			name:  "mutual-TLS server (silk-controller, policy-server-internal)",
			build: server,
			want: fields{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13,
				CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
				ClientAuth:   tls.RequireAndVerifyClientCert, HasClientCAs: true},
		},
		{
			name:  "internal service defaults server (service-discovery-controller)",
			build: server,
			opts:  []mtls.Option{mtls.InternalServiceDefaults()},
			want: fields{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13,
				CipherSuites:     []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
				CurvePreferences: []tls.CurveID{tls.CurveP384, tls.CurveP256},
				ClientAuth:       tls.RequireAndVerifyClientCert, HasClientCAs: true},
		},
		{
			name:  "one-way server (external policy-server)",
			build: server,
			opts:  []mtls.Option{mtls.WithoutClientAuth()},
			want: fields{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13,
				CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, ClientAuth: tls.NoClientCert},
		},
		{
			name:  "mutual-TLS client keeps Go's cipher defaults",
			build: client,
			want:  fields{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13, HasRoots: true},
		},
		{
			name:  "client with server name and internal service defaults (NATS)",
			build: client,
			opts:  []mtls.Option{mtls.InternalServiceDefaults(), mtls.WithServerName("nats.service.cf.internal")},
			want: fields{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13,
				CipherSuites:     []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
				CurvePreferences: []tls.CurveID{tls.CurveP384, tls.CurveP256},
				HasRoots:         true, ServerName: "nats.service.cf.internal"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.build(tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, of(cfg), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
			if len(cfg.Certificates) != 1 || cfg.Certificates[0].Leaf == nil {
				t.Errorf("want one certificate with its parsed leaf, got %d", len(cfg.Certificates))
			}
		})
	}
}

func TestFromPEM(t *testing.T) {
	m := mtlstest.Material(t)
	serverCfg, err := mtls.ServerConfigFromPEM(m.ServerCert, m.ServerKey, m.CA)
	if err != nil {
		t.Fatal(err)
	}
	clientCfg, err := mtls.ClientConfigFromPEM(m.ClientCert, m.ClientKey, m.CA)
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

func TestBadInputs(t *testing.T) {
	f := mtlstest.NewTestFiles(t)
	m := mtlstest.Material(t)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missing := filepath.Join(dir, "missing.crt")
	empty := file("empty.crt", "")
	garbage := file("garbage.crt", "this is not PEM\n")
	corrupt := file("corrupt.crt", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	unreadable := file("unreadable.key", string(m.ServerKey))
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	encrypted := file("encrypted.key", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")

	type build func() (*tls.Config, error)
	server := func(cert, key, ca string, opts ...mtls.Option) build {
		return func() (*tls.Config, error) { return mtls.ServerConfig(cert, key, ca, opts...) }
	}
	client := func(cert, key, ca string, opts ...mtls.Option) build {
		return func() (*tls.Config, error) { return mtls.ClientConfig(cert, key, ca, opts...) }
	}
	tests := []struct {
		name     string
		build    build
		want     []string // substrings of the error
		notExist bool
	}{
		{"missing cert file", server(missing, f.ServerKey, f.CAFile),
			[]string{"load server key pair " + missing + ": unreadable: no such file or directory"}, true},
		{"missing key file", client(f.ClientCert, missing, f.CAFile),
			[]string{"load client key pair " + missing + ": unreadable"}, true},
		{"missing CA file", server(f.ServerCert, f.ServerKey, missing),
			[]string{"load CA " + missing + ": unreadable"}, true},
		{"empty CA file", server(f.ServerCert, f.ServerKey, empty),
			[]string{"load CA " + empty + ": no certificates found in CA file (it is empty)"}, false},
		{"CA file without PEM", client(f.ClientCert, f.ClientKey, garbage),
			[]string{"load CA " + garbage + ": no certificates found in CA file (no PEM data)"}, false},
		{"CA file holding a key", server(f.ServerCert, f.ServerKey, f.ServerKey),
			[]string{"load CA " + f.ServerKey + ": no certificates found in CA file (it holds PRIVATE KEY)"}, false},
		{"corrupt certificate in CA file", server(f.ServerCert, f.ServerKey, corrupt),
			[]string{"load CA " + corrupt + ": parse certificate 1 in CA file"}, false},
		{"cert and key swapped", server(f.ServerKey, f.ServerCert, f.CAFile),
			[]string{"load server key pair " + f.ServerKey + ": no certificates found in certificate file (it holds PRIVATE KEY)"}, false},
		{"key file holds a certificate", server(f.ServerCert, f.CAFile, f.CAFile),
			[]string{"load server key pair " + f.CAFile + ": no private key found in key file (it holds CERTIFICATE)"}, false},
		{"key of another certificate", server(f.ServerCert, f.ClientKey, f.CAFile),
			[]string{"load server key pair " + f.ServerCert + ", " + f.ClientKey + ": private key does not match the certificate's public key"}, false},
		{"unreadable key", server(f.ServerCert, unreadable, f.CAFile),
			[]string{"load server key pair " + unreadable + ": unreadable: permission denied"}, false},
		{"encrypted key", client(f.ClientCert, encrypted, f.CAFile),
			[]string{"load client key pair " + encrypted + ": encrypted private keys are not supported"}, false},
		{"empty cert path", server("", f.ServerKey, f.CAFile),
			[]string{"load server key pair certificate file: no file name given"}, false},
		{"empty CA path", client(f.ClientCert, f.ClientKey, ""),
			[]string{"load CA CA file: no file name given"}, false},
		{"PEM without CA", func() (*tls.Config, error) { return mtls.ServerConfigFromPEM(m.ServerCert, m.ServerKey, nil) },
			[]string{"load CA CA PEM: no certificates found in CA PEM (it is empty)"}, false},
		{"PEM key mismatch", func() (*tls.Config, error) { return mtls.ClientConfigFromPEM(m.ClientCert, m.ServerKey, m.CA) },
			[]string{"load client key pair certificate PEM, key PEM: private key does not match"}, false},
		{"server name on a server", server(f.ServerCert, f.ServerKey, f.CAFile, mtls.WithServerName("x")),
			[]string{"WithServerName applies to client configurations only"}, false},
		{"no client auth on a client", client(f.ClientCert, f.ClientKey, f.CAFile, mtls.WithoutClientAuth()),
			[]string{"WithoutClientAuth applies to server configurations only"}, false},
		{"insecure cipher suite", server(f.ServerCert, f.ServerKey, f.CAFile, mtls.WithCipherSuites(tls.TLS_RSA_WITH_RC4_128_SHA)),
			[]string{"cipher suite TLS_RSA_WITH_RC4_128_SHA is not a secure TLS 1.2 suite"}, false},
		{"TLS 1.3 cipher suite", client(f.ClientCert, f.ClientKey, f.CAFile, mtls.WithCipherSuites(tls.TLS_AES_128_GCM_SHA256)),
			[]string{"cipher suite TLS_AES_128_GCM_SHA256 is not a secure TLS 1.2 suite"}, false},
		{"empty cipher suite list", server(f.ServerCert, f.ServerKey, f.CAFile, mtls.WithCipherSuites()),
			[]string{"empty cipher suite list"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			build := tt.build
			if tt.name == "unreadable key" {
				build = withoutDACOverride(t, build)
			}
			cfg, err := build()
			if err == nil {
				t.Fatalf("got a config (%d certificates), want an error", len(cfg.Certificates))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if got := errors.Is(err, fs.ErrNotExist); got != tt.notExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v", got, tt.notExist)
			}
		})
	}
}

func TestLoadCertPool(t *testing.T) {
	f := mtlstest.NewTestFiles(t)
	pool, err := mtls.LoadCertPool(f.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	m := mtlstest.Material(t)
	cfg, err := mtls.ServerConfigFromPEM(m.ServerCert, m.ServerKey, m.CA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Certificates[0].Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: mtls.SilkControllerHost}); err != nil {
		t.Errorf("server certificate does not verify against the loaded pool: %v", err)
	}
	if _, err := mtls.LoadCertPool(f.ServerKey); err == nil || !strings.Contains(err.Error(), f.ServerKey) {
		t.Errorf("LoadCertPool(key file) error = %v, want one naming the file", err)
	}
}

// withoutDACOverride runs build on an OS thread of its own that lacks
// CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH when the test runs as root, so a
// mode-0 file is unreadable to it as to any other user (capabilities are
// per thread; the thread is discarded afterwards). Without root it returns
// build unchanged.
func withoutDACOverride[T any](t *testing.T, build func() (T, error)) func() (T, error) {
	if os.Geteuid() != 0 {
		return build
	}
	return func() (T, error) {
		type result struct {
			v   T
			err error
		}
		done := make(chan result, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var data [2]unix.CapUserData
			if err := unix.Capget(&hdr, &data[0]); err != nil {
				t.Errorf("capget: %v", err)
				done <- result{}
				return
			}
			data[0].Effective &^= 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_DAC_READ_SEARCH
			if err := unix.Capset(&hdr, &data[0]); err != nil {
				t.Errorf("capset: %v", err)
				done <- result{}
				return
			}
			v, err := build()
			done <- result{v, err}
		}()
		r := <-done
		return r.v, r.err
	}
}

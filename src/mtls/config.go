// Package mtls owns netman's TLS settings on the wire: the mutual-TLS server and client configurations
// every daemon builds from its cert/key/CA files (upstream's version floor and cipher restrictions), and
// a small certificate factory (CA, Issue, WriteTree) for tests, labs and the netman-certs command.
package mtls

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
)

// upstreamCipherSuite is the only TLS 1.2 suite silk-controller, policy-server-internal and the external
// policy-server accept ("will reject connections using any other cipher suite"). It is ECDHE_RSA, so
// server keys must be RSA for TLS 1.2 clients; TLS 1.3 suites are not configurable in Go.
const upstreamCipherSuite = tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256

// Option adjusts a configuration built by ServerConfig or ClientConfig (and their PEM variants).
type Option func(*options)

type options struct {
	cipherSuites []uint16 // nil: server → upstreamCipherSuite only, client → Go defaults
	curves       []tls.CurveID
	serverName   string
	noClientAuth bool
}

// WithCipherSuites replaces the TLS 1.2 cipher suites. Every suite must be one Go considers secure.
func WithCipherSuites(suites ...uint16) Option {
	// Non-nil even when empty, so that an empty list is reported rather than taken as "unset".
	return func(o *options) { o.cipherSuites = append([]uint16{}, suites...) }
}

// WithCurves sets the key-exchange groups (tls.Config.CurvePreferences), for every TLS version.
func WithCurves(curves ...tls.CurveID) Option {
	return func(o *options) { o.curves = append([]tls.CurveID{}, curves...) }
}

// InternalServiceDefaults applies the "internal service defaults" profile upstream uses for the
// service-discovery-controller HTTPS server and its NATS client: TLS 1.2 suites ECDHE_RSA AES-256-GCM and
// AES-128-GCM, curves P-384 and P-256.
func InternalServiceDefaults() Option {
	return func(o *options) {
		o.cipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
		o.curves = []tls.CurveID{tls.CurveP384, tls.CurveP256}
	}
}

// WithServerName makes a client verify the server certificate against name instead of the dialled host.
// Client only; upstream clients never need it because they dial the name in the certificate.
func WithServerName(name string) Option {
	return func(o *options) { o.serverName = name }
}

// WithoutClientAuth makes a server one-way TLS (the external policy-server behind gorouter): no client
// certificate is requested and the CA argument is ignored. Server only.
func WithoutClientAuth() Option {
	return func(o *options) { o.noClientAuth = true }
}

// ServerConfig returns the mutual-TLS server configuration upstream's silk-controller and
// policy-server-internal use: certificate and key from files, client certificates required and verified
// against caFile, TLS 1.2 to 1.3, and TLS 1.2 restricted to TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256.
func ServerConfig(certFile, keyFile, caFile string, opts ...Option) (*tls.Config, error) {
	return build("server", fileInput(certFile), fileInput(keyFile), fileInput(caFile), opts, serverConfig)
}

// ServerConfigFromPEM is ServerConfig with the certificate, key and CA given as PEM bytes.
func ServerConfigFromPEM(certPEM, keyPEM, caPEM []byte, opts ...Option) (*tls.Config, error) {
	return build("server", pemInput(certPEM), pemInput(keyPEM), pemInput(caPEM), opts, serverConfig)
}

// ClientConfig returns the mutual-TLS client configuration of silk-daemon and vxlan-policy-agent: client
// certificate and key from files, server verified against caFile (RootCAs), TLS 1.2 to 1.3.
func ClientConfig(certFile, keyFile, caFile string, opts ...Option) (*tls.Config, error) {
	return build("client", fileInput(certFile), fileInput(keyFile), fileInput(caFile), opts, clientConfig)
}

// ClientConfigFromPEM is ClientConfig with the certificate, key and CA given as PEM bytes.
func ClientConfigFromPEM(certPEM, keyPEM, caPEM []byte, opts ...Option) (*tls.Config, error) {
	return build("client", pemInput(certPEM), pemInput(keyPEM), pemInput(caPEM), opts, clientConfig)
}

// build loads the key pair and hands it to finish (serverConfig or
// clientConfig) with the CA and the options.
func build(role string, cert, key, ca input, opts []Option, finish func(tls.Certificate, input, options) (*tls.Config, error)) (*tls.Config, error) {
	o, err := resolve(opts)
	if err != nil {
		return nil, err
	}
	pair, err := loadKeyPair(role, cert, key)
	if err != nil {
		return nil, err
	}
	return finish(pair, ca, o)
}

func resolve(opts []Option) (options, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.cipherSuites != nil {
		if len(o.cipherSuites) == 0 {
			return o, errors.New("tls options: empty cipher suite list")
		}
		for _, id := range o.cipherSuites {
			if !secureTLS12Suite(id) {
				return o, fmt.Errorf("tls options: cipher suite %s is not a secure TLS 1.2 suite", tls.CipherSuiteName(id))
			}
		}
	}
	if o.curves != nil && len(o.curves) == 0 {
		return o, errors.New("tls options: empty curve list")
	}
	return o, nil
}

// secureTLS12Suite rejects insecure suites and TLS 1.3-only ones, which tls.Config would silently ignore.
func secureTLS12Suite(id uint16) bool {
	for _, s := range tls.CipherSuites() {
		if s.ID == id {
			return slices.Contains(s.SupportedVersions, tls.VersionTLS12)
		}
	}
	return false
}

func serverConfig(cert tls.Certificate, ca input, o options) (*tls.Config, error) {
	if o.serverName != "" {
		return nil, errors.New("tls options: WithServerName applies to client configurations only")
	}
	cfg := &tls.Config{
		Certificates:     []tls.Certificate{cert},
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS13,
		CipherSuites:     []uint16{upstreamCipherSuite},
		CurvePreferences: o.curves,
		ClientAuth:       tls.NoClientCert,
	}
	if o.cipherSuites != nil {
		cfg.CipherSuites = o.cipherSuites
	}
	if !o.noClientAuth {
		pool, err := loadPool(ca)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

func clientConfig(cert tls.Certificate, ca input, o options) (*tls.Config, error) {
	if o.noClientAuth {
		return nil, errors.New("tls options: WithoutClientAuth applies to server configurations only")
	}
	pool, err := loadPool(ca)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates:     []tls.Certificate{cert},
		RootCAs:          pool,
		ServerName:       o.serverName,
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS13,
		CipherSuites:     o.cipherSuites, // nil: Go's defaults, as upstream clients
		CurvePreferences: o.curves,
	}, nil
}

package mtls

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Usage is what an issued certificate may authenticate: its extended key usage.
type Usage int

const (
	Server Usage = 1 << iota // serverAuth
	Client                   // clientAuth
)

// Both is a certificate that may serve and connect (serverAuth and clientAuth).
const Both = Server | Client

func (u Usage) String() string {
	switch u {
	case Server:
		return "server"
	case Client:
		return "client"
	case Both:
		return "server+client"
	default:
		return fmt.Sprintf("Usage(%d)", int(u))
	}
}

func (u Usage) extKeyUsages() []x509.ExtKeyUsage {
	var eku []x509.ExtKeyUsage
	if u&Server != 0 {
		eku = append(eku, x509.ExtKeyUsageServerAuth)
	}
	if u&Client != 0 {
		eku = append(eku, x509.ExtKeyUsageClientAuth)
	}
	return eku
}

const (
	caValidity   = 2 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	// backdate tolerates clock skew between the machine that issues and the ones that verify.
	backdate = time.Hour
	rsaBits  = 2048
)

// CA is a self-signed certificate authority that issues RSA server and client certificates.
// It is safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	keyPEM  []byte
	// newKey generates leaf keys; tests substitute a cache because RSA generation dominates their run time.
	newKey func() (*rsa.PrivateKey, error)
}

// NewCA creates a self-signed CA valid for two years. Its own key is ECDSA P-256: the CA's signature
// algorithm does not constrain the ECDHE_RSA cipher suites, only the leaf (server) key does.
func NewCA(commonName string) (*CA, error) {
	if commonName == "" {
		return nil, errors.New("new CA: empty common name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: generate key: %w", commonName, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("new CA %q: %w", commonName, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // issues leaves only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: create certificate: %w", commonName, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: %w", commonName, err)
	}
	return ParseCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM)
}

// ParseCA rebuilds a CA from its PEM certificate and key, so that a CA on disk can keep issuing.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	return parseCA(pemInput(certPEM), pemInput(keyPEM))
}

// LoadCA is ParseCA reading the certificate and key from files.
func LoadCA(certFile, keyFile string) (*CA, error) {
	return parseCA(fileInput(certFile), fileInput(keyFile))
}

func parseCA(certIn, keyIn input) (*CA, error) {
	certName, keyName := certIn.name("CA certificate"), keyIn.name("CA key")
	_, certs, err := readParsed(certIn, "CA certificate", parseCertificates)
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", certName, err)
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("load CA %s: holds %d certificates, want exactly one", certName, len(certs))
	}
	cert := certs[0]
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("load CA %s: certificate %q is not a CA (needs basic constraints CA:true and keyCertSign)", certName, cert.Subject.CommonName)
	}
	keyPEM, key, err := readParsed(keyIn, "CA key", parsePrivateKey)
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", keyName, err)
	}
	if !keyMatches(cert, key) {
		return nil, fmt.Errorf("load CA %s, %s: private key does not match the certificate's public key", certName, keyName)
	}
	return &CA{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		keyPEM:  bytes.Clone(keyPEM),
	}, nil
}

// CertPEM returns the CA certificate, the content of every component's ca.crt.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// KeyPEM returns the CA private key (PEM, as it was parsed or PKCS #8 for a new CA).
func (ca *CA) KeyPEM() []byte { return bytes.Clone(ca.keyPEM) }

// Certificate returns the parsed CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Issue creates an RSA-2048 key and a certificate for it signed by the CA, valid for one year (never past
// the CA). hosts become subject alternative names: IP addresses as IP SANs, anything else as DNS names.
// A Server certificate needs at least one host because clients verify names only against SANs.
func (ca *CA) Issue(commonName string, hosts []string, usage Usage) (certPEM, keyPEM []byte, err error) {
	return ca.issue(commonName, hosts, usage, time.Now())
}

func (ca *CA) issue(commonName string, hosts []string, usage Usage, now time.Time) (certPEM, keyPEM []byte, err error) {
	if usage != Server && usage != Client && usage != Both {
		return nil, nil, fmt.Errorf("issue %q: invalid usage %v", commonName, usage)
	}
	if commonName == "" && len(hosts) == 0 {
		return nil, nil, errors.New("issue: neither a common name nor hosts given")
	}
	if usage&Server != 0 && len(hosts) == 0 {
		return nil, nil, fmt.Errorf("issue %q: a server certificate needs at least one host", commonName)
	}
	dns, ips, err := splitHosts(hosts)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %q: %w", commonName, err)
	}
	newKey := ca.newKey
	if newKey == nil {
		newKey = func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, rsaBits) }
	}
	key, err := newKey()
	if err != nil {
		return nil, nil, fmt.Errorf("issue %q: generate key: %w", commonName, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("issue %q: %w", commonName, err)
	}
	notAfter := now.Add(leafValidity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		// KeyEncipherment keeps older RSA key-exchange clients happy; Go does not need it.
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           usage.extKeyUsages(),
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %q: create certificate: %w", commonName, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %q: %w", commonName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// WriteFiles issues a certificate (see Issue) and writes it to dir as <name>.crt and <name>.key.
func (ca *CA) WriteFiles(dir, name, commonName string, hosts []string, usage Usage) (certFile, keyFile string, err error) {
	certPEM, keyPEM, err := ca.Issue(commonName, hosts, usage)
	if err != nil {
		return "", "", err
	}
	return WriteKeyPair(dir, name, certPEM, keyPEM)
}

// WriteKeyPair writes <dir>/<name>.crt (0644) and <dir>/<name>.key (0600), creating dir if needed. Each
// file is replaced atomically, so a daemon starting concurrently never reads half a key.
func WriteKeyPair(dir, name string, certPEM, keyPEM []byte) (certFile, keyFile string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("write key pair %s: %w", name, err)
	}
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func splitHosts(hosts []string) (dns []string, ips []net.IP, err error) {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if h == "" || strings.ContainsAny(h, " \t/:@") {
			return nil, nil, fmt.Errorf("host %q is neither an IP address nor a DNS name", h)
		}
		dns = append(dns, h)
	}
	return dns, ips, nil
}

func randomSerial() (*big.Int, error) {
	// 128 random bits: unique without bookkeeping, and within RFC 5280's 20-octet limit.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil // positive, never zero
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

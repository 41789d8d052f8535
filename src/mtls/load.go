package mtls

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"strings"
)

// LoadCertPool reads every certificate in caFile into a pool, for TLS users outside this package
// (database connections). It fails if the file holds no certificate or an unparsable one.
func LoadCertPool(caFile string) (*x509.CertPool, error) {
	return loadPool(fileInput(caFile))
}

// input is PEM material that comes either from a file or from memory; errors name the file when there is one.
type input struct {
	path string
	data []byte
	file bool
}

func fileInput(path string) input { return input{path: path, file: true} }
func pemInput(data []byte) input  { return input{data: data} }

// name is how errors refer to the input: the path, or what the bytes were meant to be.
func (in input) name(what string) string {
	switch {
	case !in.file:
		return what + " PEM"
	case in.path == "":
		return what + " file"
	default:
		return in.path
	}
}

// noun completes "no certificates found in ...".
func (in input) noun(what string) string {
	if in.file {
		return what + " file"
	}
	return what + " PEM"
}

func (in input) read() ([]byte, error) {
	if !in.file {
		return in.data, nil
	}
	if in.path == "" {
		return nil, errors.New("no file name given")
	}
	data, err := os.ReadFile(in.path)
	if err != nil {
		// The path is already in the caller's message; keep only the cause (still matches fs.ErrNotExist).
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("unreadable: %w", err)
	}
	return data, nil
}

// readParsed reads in and parses it, naming it as a what ("no certificates
// found in certificate file").
func readParsed[T any](in input, what string, parse func([]byte, string) (T, error)) ([]byte, T, error) {
	data, err := in.read()
	if err != nil {
		var zero T
		return nil, zero, err
	}
	v, err := parse(data, in.noun(what))
	return data, v, err
}

func loadKeyPair(role string, certIn, keyIn input) (tls.Certificate, error) {
	certName, keyName := certIn.name("certificate"), keyIn.name("key")
	certPEM, certs, err := readParsed(certIn, "certificate", parseCertificates)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load %s key pair %s: %w", role, certName, err)
	}
	keyPEM, key, err := readParsed(keyIn, "key", parsePrivateKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load %s key pair %s: %w", role, keyName, err)
	}
	if !keyMatches(certs[0], key) {
		return tls.Certificate{}, fmt.Errorf("load %s key pair %s, %s: private key does not match the certificate's public key", role, certName, keyName)
	}
	// Checked above already; X509KeyPair builds the chain and Leaf the way crypto/tls expects.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load %s key pair %s, %s: %w", role, certName, keyName, err)
	}
	return pair, nil
}

func loadPool(in input) (*x509.CertPool, error) {
	_, certs, err := readParsed(in, "CA", parseCertificates)
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", in.name("CA"), err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// parseCertificates returns every CERTIFICATE block. Unlike x509.CertPool.AppendCertsFromPEM it does not
// skip a corrupt block silently: a truncated CA bundle should fail at startup, not at the first handshake.
func parseCertificates(data []byte, noun string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	var others []string
	for block := range pemBlocks(data) {
		if block.Type != "CERTIFICATE" {
			others = append(others, block.Type)
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d in %s: %w", len(certs)+1, noun, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, absent("no certificates found in "+noun, data, others)
	}
	return certs, nil
}

// parsePrivateKey returns the first private key in data, in any of the encodings tls.X509KeyPair accepts.
func parsePrivateKey(data []byte, noun string) (crypto.Signer, error) {
	var others []string
	for block := range pemBlocks(data) {
		var key any
		var err error
		switch {
		case block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "":
			return nil, fmt.Errorf("encrypted private keys are not supported (%s)", noun)
		case block.Type == "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case block.Type == "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case block.Type == "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			others = append(others, block.Type)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse private key in %s: %w", noun, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("parse private key in %s: unsupported key type %T", noun, key)
		}
		return signer, nil
	}
	return nil, absent("no private key found in "+noun, data, others)
}

// pemBlocks yields the PEM blocks of data in order.
func pemBlocks(data []byte) iter.Seq[*pem.Block] {
	return func(yield func(*pem.Block) bool) {
		for rest := data; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil || !yield(block) {
				return
			}
		}
	}
}

func keyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(key.Public())
}

// absent says what was there instead, since the usual cause is swapped or empty files.
func absent(msg string, data []byte, others []string) error {
	switch {
	case len(bytes.TrimSpace(data)) == 0:
		return errors.New(msg + " (it is empty)")
	case len(others) == 0:
		return errors.New(msg + " (no PEM data)")
	default:
		return fmt.Errorf("%s (it holds %s)", msg, strings.Join(others, ", "))
	}
}

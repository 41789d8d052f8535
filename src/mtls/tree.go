package mtls

import (
	"bytes"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Upstream service names, the hosts clients dial and therefore the SANs servers must carry.
const (
	SilkControllerHost             = "silk-controller.service.cf.internal"
	PolicyServerHost               = "policy-server.service.cf.internal"
	ServiceDiscoveryControllerHost = "service-discovery-controller.service.cf.internal"
)

// Component is one netman job that presents a certificate, with the identity cf-deployment gives it.
type Component struct {
	Name       string   // job name, the directory under the tree
	Usage      Usage    // Server: server.crt/server.key; Client: client.crt/client.key
	CommonName string   // subject CN
	Hosts      []string // upstream SANs; WriteTree adds loopback and extra hosts to servers
}

// Components lists the certificates upstream deploys for netman's connections (the mTLS matrix of
// release-and-discovery §5.1), one per job. There are no metron/loggregator certificates.
func Components() []Component {
	return []Component{
		{Name: "silk-controller", Usage: Server, CommonName: SilkControllerHost, Hosts: []string{SilkControllerHost}},
		{Name: "silk-daemon", Usage: Client, CommonName: "silk-daemon"},
		{Name: "policy-server-internal", Usage: Server, CommonName: PolicyServerHost, Hosts: []string{PolicyServerHost}},
		// cf-deployment's network_policy_client really is CN "clientName"; servers do not check client CNs.
		{Name: "vxlan-policy-agent", Usage: Client, CommonName: "clientName"},
		// The external API's upstream name is api.<system domain>, which only the operator knows: pass it as an extra host.
		{Name: "policy-server", Usage: Server, CommonName: PolicyServerHost, Hosts: []string{PolicyServerHost}},
		{Name: "service-discovery-controller", Usage: Server, CommonName: ServiceDiscoveryControllerHost, Hosts: []string{ServiceDiscoveryControllerHost}},
		{Name: "bosh-dns-adapter", Usage: Client, CommonName: ServiceDiscoveryControllerHost, Hosts: []string{ServiceDiscoveryControllerHost}},
	}
}

// TreeOptions tunes WriteTree.
type TreeOptions struct {
	// ExtraHosts (names or IPs) are added to every server certificate, after 127.0.0.1 and localhost.
	ExtraHosts []string
	// Force replaces the CA and every certificate even when the existing ones are still good.
	Force bool
}

// TreeResult says what WriteTree did, by component name.
type TreeResult struct {
	CACreated bool     // false: the CA in the tree was reused
	Issued    []string // components that got a new certificate
	Kept      []string // components whose existing certificate was still good
}

const (
	caCommonName = "netman-ca"
	// renewBefore reissues a certificate this close to expiry rather than keep one about to break.
	renewBefore = 30 * 24 * time.Hour
)

// WriteTree writes <dir>/ca.{crt,key} and, for every component, <dir>/<component>/ca.crt plus
// server.{crt,key} or client.{crt,key}. It is idempotent: an existing CA is reused, and a component
// certificate is kept while it chains to the CA, matches its key, carries the wanted name and hosts and
// is not about to expire. A CA that is present but unusable is an error, never silently replaced,
// because every certificate already deployed from it would stop verifying; Force replaces it.
func WriteTree(dir string, opts TreeOptions) (TreeResult, error) {
	return writeTree(dir, opts, nil, time.Now())
}

func writeTree(dir string, opts TreeOptions, newKey func() (*rsa.PrivateKey, error), now time.Time) (TreeResult, error) {
	var res TreeResult
	extra, err := cleanHosts(opts.ExtraHosts)
	if err != nil {
		return res, err
	}
	ca, created, err := treeCA(dir, opts.Force, now)
	if err != nil {
		return res, err
	}
	ca.newKey = newKey
	res.CACreated = created

	for _, c := range Components() {
		hosts := c.Hosts
		if c.Usage&Server != 0 {
			hosts = dedupe(slices.Concat(c.Hosts, []string{"127.0.0.1", "localhost"}, extra))
		}
		compDir := filepath.Join(dir, c.Name)
		if err := os.MkdirAll(compDir, 0o755); err != nil {
			return res, fmt.Errorf("write certificates for %s: %w", c.Name, err)
		}
		if err := writeIfChanged(filepath.Join(compDir, "ca.crt"), ca.certPEM, 0o644); err != nil {
			return res, fmt.Errorf("write certificates for %s: %w", c.Name, err)
		}
		name := "client"
		if c.Usage == Server {
			name = "server"
		}
		certFile, keyFile := filepath.Join(compDir, name+".crt"), filepath.Join(compDir, name+".key")
		if !opts.Force && leafUsable(ca, certFile, keyFile, c.CommonName, hosts, c.Usage, now) {
			res.Kept = append(res.Kept, c.Name)
			continue
		}
		certPEM, keyPEM, err := ca.issue(c.CommonName, hosts, c.Usage, now)
		if err != nil {
			return res, fmt.Errorf("write certificates for %s: %w", c.Name, err)
		}
		if _, _, err := WriteKeyPair(compDir, name, certPEM, keyPEM); err != nil {
			return res, fmt.Errorf("write certificates for %s: %w", c.Name, err)
		}
		res.Issued = append(res.Issued, c.Name)
	}
	return res, nil
}

// treeCA loads <dir>/ca.{crt,key} or, when absent (or forced), creates and writes a new CA.
func treeCA(dir string, force bool, now time.Time) (ca *CA, created bool, err error) {
	certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if !force {
		certExists, err := exists(certFile)
		if err != nil {
			return nil, false, err
		}
		keyExists, err := exists(keyFile)
		if err != nil {
			return nil, false, err
		}
		switch {
		case certExists && keyExists:
			ca, err := LoadCA(certFile, keyFile)
			if err != nil {
				return nil, false, fmt.Errorf("%w (replace it with -force)", err)
			}
			if ca.cert.NotAfter.Before(now.Add(renewBefore)) {
				return nil, false, fmt.Errorf("CA %s expires %s (replace it and every certificate with -force)", certFile, ca.cert.NotAfter.Format(time.RFC3339))
			}
			return ca, false, nil
		case certExists || keyExists:
			return nil, false, fmt.Errorf("found only one of %s and %s (create a new CA with -force)", certFile, keyFile)
		}
	}
	ca, err = NewCA(caCommonName)
	if err != nil {
		return nil, false, err
	}
	if _, _, err := WriteKeyPair(dir, "ca", ca.certPEM, ca.keyPEM); err != nil {
		return nil, false, err
	}
	return ca, true, nil
}

// leafUsable reports whether an existing pair can stay. Any doubt means reissue: certificates are cheap.
func leafUsable(ca *CA, certFile, keyFile, commonName string, hosts []string, usage Usage, now time.Time) bool {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return false
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return false
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM) // also checks that the key matches
	if err != nil || pair.Leaf == nil {
		return false
	}
	leaf := pair.Leaf
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   usage.extKeyUsages(),
	}); err != nil {
		return false
	}
	if !slices.Equal(leaf.ExtKeyUsage, usage.extKeyUsages()) || leaf.Subject.CommonName != commonName {
		return false
	}
	if leaf.NotAfter.Before(now.Add(renewBefore)) {
		return false
	}
	for _, h := range hosts {
		if !hasSAN(leaf, h) {
			return false
		}
	}
	return true
}

func hasSAN(cert *x509.Certificate, host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return slices.ContainsFunc(cert.IPAddresses, ip.Equal)
	}
	return slices.ContainsFunc(cert.DNSNames, func(n string) bool { return strings.EqualFold(n, host) })
}

func cleanHosts(hosts []string) ([]string, error) {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if _, _, err := splitHosts([]string{h}); err != nil {
			return nil, fmt.Errorf("extra host: %w", err)
		}
		out = append(out, h)
	}
	return out, nil
}

func dedupe(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		if !slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, h) }) {
			out = append(out, h)
		}
	}
	return out
}

// writeIfChanged leaves an identical file untouched so that reruns do not bump modification times.
func writeIfChanged(path string, data []byte, perm os.FileMode) error {
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, data) {
		return nil
	}
	return writeFileAtomic(path, data, perm)
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("check %s: %w", path, err)
	}
}

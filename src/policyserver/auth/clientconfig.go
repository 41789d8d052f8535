package auth

import (
	"fmt"
	"net/http"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/configfile"
)

// ClientConfig holds the UAA and Cloud Controller keys policy-server and
// policy-server-asg-syncer share (upstream's names); both embed it in their
// config.
type ClientConfig struct {
	UAAClient         string `json:"uaa_client"`
	UAAClientSecret   string `json:"uaa_client_secret"`
	UAACA             string `json:"uaa_ca"`
	UAAURL            string `json:"uaa_url"`
	UAAPort           int    `json:"uaa_port"`
	CCURL             string `json:"cc_url"`
	CCCA              string `json:"cc_ca_cert"`
	SkipSSLValidation bool   `json:"skip_ssl_validation"`
	// RequestTimeout bounds each UAA and Cloud Controller call, in
	// seconds. Upstream's templates rendered it (policy-server) or had
	// none (the syncer), and upstream's calls could wait forever; netman
	// honours it.
	RequestTimeout int `json:"request_timeout"`
}

// Check records the problems of the UAA and CC keys: the credentials and
// URLs are required, the CA files are read when set (and not skipped).
func (c ClientConfig) Check(p *configfile.Problems) {
	p.RequiredString("uaa_client", c.UAAClient)
	p.RequiredString("uaa_client_secret", c.UAAClientSecret)
	p.HTTPURL("uaa_url", c.UAAURL)
	p.Port("uaa_port", c.UAAPort)
	p.HTTPURL("cc_url", c.CCURL)
	if !c.SkipSSLValidation {
		p.OptionalFile("uaa_ca", c.UAACA)
		p.OptionalFile("cc_ca_cert", c.CCCA)
	}
}

// UAABaseURL is "<uaa_url>:<uaa_port>", as upstream builds it.
func (c ClientConfig) UAABaseURL() string { return fmt.Sprintf("%s:%d", c.UAAURL, c.UAAPort) }

// Timeout is request_timeout as a duration.
func (c ClientConfig) Timeout() time.Duration { return time.Duration(c.RequestTimeout) * time.Second }

// HTTPClient is the client both the UAA and the CC client use: the CA
// files' roots (or none when skip_ssl_validation), request_timeout.
func (c ClientConfig) HTTPClient() (*http.Client, error) {
	tlsConfig, err := ClientTLSConfig(c.SkipSSLValidation, c.UAACA, c.CCCA)
	if err != nil {
		return nil, fmt.Errorf("error creating tls config: %w", err)
	}
	return NewHTTPClient(tlsConfig, c.Timeout()), nil
}

// UAA is the UAA client over httpClient, logging in session "uaa-client".
func (c ClientConfig) UAA(logger lager.Logger, httpClient *http.Client) *UAAClient {
	return NewUAAClient(logger.Session("uaa-client"), httpClient, c.UAABaseURL(), c.UAAClient, c.UAAClientSecret)
}

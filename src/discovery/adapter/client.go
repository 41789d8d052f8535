package adapter

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/lifecycle"
)

// Retry schedule of upstream's client: up to four attempts while the
// controller answers with a non-200 status (e.g. 500 while its table warms),
// sleeping a jitter of 50–124 ms plus 0, 500 and 1000 ms between them. A
// transport error is not retried.
const (
	attempts      = 4
	retryStep     = 500 * time.Millisecond
	jitterMin     = 50 * time.Millisecond
	jitterSpread  = 75 // ms
	clientTimeout = 10 * time.Second
)

// StatusError is the controller answering with a status other than 200 on
// every attempt; Body is the start of the last answer's body.
type StatusError struct {
	Status string
	Code   int
	Body   string
}

// Warming tells whether the controller said its address table is still
// warming up (its normal state for warm_duration_seconds after start-up).
func (e *StatusError) Warming() bool {
	return e.Code == http.StatusInternalServerError && strings.TrimSpace(e.Body) == discovery.NotWarm
}

func (e *StatusError) Error() string {
	return "Received non successful response from server: " + e.Status
}

// Client asks the service-discovery-controller for a name's IPs.
type Client struct {
	base   string
	http   *http.Client
	sleep  func(context.Context, time.Duration) error
	jitter func() time.Duration
}

// NewClient returns a client of the controller at baseURL
// (https://<address>:<port>) over tlsConfig, with upstream's connection
// pool and timeouts.
func NewClient(baseURL string, tlsConfig *tls.Config) *Client {
	return &Client{
		base: baseURL,
		http: &http.Client{
			Timeout: clientTimeout,
			Transport: &http.Transport{
				TLSClientConfig:     tlsConfig,
				MaxIdleConns:        50,
				MaxIdleConnsPerHost: 50,
				TLSHandshakeTimeout: 5 * time.Second,
			},
		},
		sleep: func(ctx context.Context, d time.Duration) error {
			if !lifecycle.Sleep(ctx, d) {
				return ctx.Err()
			}
			return nil
		},
		jitter: func() time.Duration { return jitterMin + time.Duration(rand.IntN(jitterSpread))*time.Millisecond },
	}
}

// IPs returns the IPs registered for name, shuffled.
func (c *Client) IPs(ctx context.Context, name string) ([]string, error) {
	u := c.base + "/v1/registration/" + url.PathEscape(name)
	var resp *http.Response
	for i := range attempts {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err = c.http.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusOK {
			break
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if i == attempts-1 {
			return nil, &StatusError{Status: resp.Status, Code: resp.StatusCode, Body: string(body)}
		}
		if err := c.sleep(ctx, c.jitter()+time.Duration(i)*retryStep); err != nil {
			return nil, err
		}
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var body struct {
		Hosts []struct {
			IPAddress string `json:"ip_address"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		return nil, fmt.Errorf("decoding controller response: %w", err)
	}
	ips := make([]string, len(body.Hosts))
	for i, h := range body.Hosts {
		ips[i] = h.IPAddress
	}
	rand.Shuffle(len(ips), func(i, j int) { ips[i], ips[j] = ips[j], ips[i] })
	return ips, nil
}

// CloseIdleConnections closes the pooled connections to the controller.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

package adapter

import (
	"context"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/jsonhttp"
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

// Warming tells whether err is the controller saying its address table is
// still warming up (its normal state for warm_duration_seconds after
// start-up).
func Warming(err error) bool {
	var se *jsonhttp.StatusError
	return errors.As(err, &se) && se.Code == http.StatusInternalServerError && strings.TrimSpace(se.Body) == discovery.NotWarm
}

// words are upstream's: the controller answering with a status other than
// 2xx on every attempt is a *jsonhttp.StatusError worded with its status.
var words = jsonhttp.Words{
	Decode: jsonhttp.Prefix("decoding controller response"),
	Status: func(_ jsonhttp.Call, se *jsonhttp.StatusError) error {
		return se.Reword("Received non successful response from server: %s", se.Status)
	},
}

// Client asks the service-discovery-controller for a name's IPs.
type Client struct {
	api    jsonhttp.Client
	sleep  func(context.Context, time.Duration) error
	jitter func() time.Duration
}

// NewClient returns a client of the controller at baseURL
// (https://<address>:<port>) over tlsConfig, with upstream's connection
// pool and timeouts.
func NewClient(baseURL string, tlsConfig *tls.Config) *Client {
	hc := &http.Client{
		Timeout: clientTimeout,
		Transport: &http.Transport{
			TLSClientConfig:     tlsConfig,
			MaxIdleConns:        50,
			MaxIdleConnsPerHost: 50,
			TLSHandshakeTimeout: 5 * time.Second,
		},
	}
	return &Client{
		api: jsonhttp.Client{HTTP: hc, Base: baseURL, Words: words},
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
	req := jsonhttp.Request{Path: "/v1/registration/" + url.PathEscape(name)}
	var body struct {
		Hosts []struct {
			IPAddress string `json:"ip_address"`
		} `json:"hosts"`
	}
	for i := 0; ; i++ {
		_, err := c.api.Do(ctx, req, &body)
		if err == nil {
			break
		}
		var se *jsonhttp.StatusError
		if !errors.As(err, &se) || i == attempts-1 {
			return nil, err
		}
		if err := c.sleep(ctx, c.jitter()+time.Duration(i)*retryStep); err != nil {
			return nil, err
		}
	}
	ips := make([]string, len(body.Hosts))
	for i, h := range body.Hosts {
		ips[i] = h.IPAddress
	}
	rand.Shuffle(len(ips), func(i, j int) { ips[i], ips[j] = ips[j], ips[i] })
	return ips, nil
}

// CloseIdleConnections closes the pooled connections to the controller.
func (c *Client) CloseIdleConnections() { c.api.HTTP.CloseIdleConnections() }

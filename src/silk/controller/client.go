package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/netman-release/netman/src/silk/lease"
)

// Client calls silk-controller's lease API, as silk-daemon and
// silk-teardown do.
type Client struct {
	baseURL string
	http    *http.Client
}

// NewClient uses httpClient (configured for mTLS and a timeout) against
// baseURL, e.g. https://silk-controller.service.cf.internal:4103.
func NewClient(httpClient *http.Client, baseURL string) *Client {
	return &Client{baseURL: strings.TrimRight(baseURL, "/"), http: httpClient}
}

// HTTPError is a non-2xx answer from the controller.
type HTTPError struct {
	StatusCode int
	Message    string
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("http status %d: %s", e.StatusCode, e.Message)
	if e.StatusCode == http.StatusConflict {
		return "non-retriable: " + msg
	}
	return msg
}

// IsNonRetriable reports a 409: repeating the request cannot succeed.
func IsNonRetriable(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.StatusCode == http.StatusConflict
}

// Acquire asks for underlayIP's lease.
func (c *Client) Acquire(ctx context.Context, underlayIP string, singleOverlayIP bool) (lease.Lease, error) {
	var got lease.Lease
	err := c.do(ctx, http.MethodPut, "/leases/acquire", acquireRequest{UnderlayIP: underlayIP, SingleOverlayIP: singleOverlayIP}, &got)
	return got, err
}

// Renew renews a held lease.
func (c *Client) Renew(ctx context.Context, l lease.Lease) error {
	return c.do(ctx, http.MethodPut, "/leases/renew", l, nil)
}

// Release gives underlayIP's lease back.
func (c *Client) Release(ctx context.Context, underlayIP string) error {
	return c.do(ctx, http.MethodPut, "/leases/release", releaseRequest{UnderlayIP: underlayIP}, nil)
}

// RoutableLeases lists every active lease.
func (c *Client) RoutableLeases(ctx context.Context) ([]lease.Lease, error) {
	var resp indexResponse
	if err := c.do(ctx, http.MethodGet, "/leases", nil, &resp); err != nil {
		return nil, err
	}
	return resp.Leases, nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("marshal request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("http client do: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading response body: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &HTTPError{StatusCode: resp.StatusCode, Message: msg}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("unmarshal response: %w", err)
	}
	return nil
}

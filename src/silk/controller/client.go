package controller

import (
	"context"
	"net/http"
	"strings"

	"github.com/netman-release/netman/src/jsonhttp"
	"github.com/netman-release/netman/src/silk/lease"
)

// Client calls silk-controller's lease API, as silk-daemon and
// silk-teardown do.
type Client struct {
	api jsonhttp.Client
}

// NewClient uses httpClient (configured for mTLS and a timeout) against
// baseURL, e.g. https://silk-controller.service.cf.internal:4103.
func NewClient(httpClient *http.Client, baseURL string) *Client {
	return &Client{api: jsonhttp.Client{HTTP: httpClient, Base: strings.TrimRight(baseURL, "/"), Words: words}}
}

// words are upstream's for a failed call. A non-2xx answer says the
// controller's "error" (else its body); a 409 is "non-retriable".
var words = jsonhttp.Words{
	Send:   jsonhttp.Prefix("http client do"),
	Read:   jsonhttp.Prefix("reading response body"),
	Decode: jsonhttp.Prefix("unmarshal response"),
	Status: func(_ jsonhttp.Call, se *jsonhttp.StatusError) error {
		msg := se.Message()
		if msg == "" {
			msg = strings.TrimSpace(se.Body)
		}
		if se.Code == http.StatusConflict {
			return se.Reword("non-retriable: http status %d: %s", se.Code, msg)
		}
		return se.Reword("http status %d: %s", se.Code, msg)
	},
}

// IsNonRetriable reports a 409: repeating the request cannot succeed.
func IsNonRetriable(err error) bool {
	return jsonhttp.IsStatus(err, http.StatusConflict)
}

// Acquire asks for underlayIP's lease.
func (c *Client) Acquire(ctx context.Context, underlayIP string, singleOverlayIP bool) (lease.Lease, error) {
	var got lease.Lease
	err := c.put(ctx, "/leases/acquire", acquireRequest{UnderlayIP: underlayIP, SingleOverlayIP: singleOverlayIP}, &got)
	return got, err
}

// Renew renews a held lease.
func (c *Client) Renew(ctx context.Context, l lease.Lease) error {
	return c.put(ctx, "/leases/renew", l, nil)
}

// Release gives underlayIP's lease back.
func (c *Client) Release(ctx context.Context, underlayIP string) error {
	return c.put(ctx, "/leases/release", releaseRequest{UnderlayIP: underlayIP}, nil)
}

// RoutableLeases lists every active lease.
func (c *Client) RoutableLeases(ctx context.Context) ([]lease.Lease, error) {
	var resp indexResponse
	if _, err := c.api.Do(ctx, jsonhttp.Request{Path: "/leases"}, &resp); err != nil {
		return nil, err
	}
	return resp.Leases, nil
}

func (c *Client) put(ctx context.Context, path string, in, out any) error {
	_, err := c.api.Do(ctx, jsonhttp.Request{Method: http.MethodPut, Path: path, Body: in}, out)
	return err
}

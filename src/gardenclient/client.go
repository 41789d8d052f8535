// Package gardenclient is the part of Garden's HTTP API the cell's
// networking tools read: ping, the container list and a container's
// properties. It speaks Garden's wire format (routes, JSON bodies, the
// {"Type","Message",...} error document) over Garden's unix socket or TCP,
// like code.cloudfoundry.org/garden's client, which netman cannot vendor.
package gardenclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Error types Garden's server marshals into an error document's "Type".
const (
	TypeUnrecoverable      = "UnrecoverableError"
	TypeServiceUnavailable = "ServiceUnavailableError"
	TypeContainerNotFound  = "ContainerNotFoundError"
	TypeProcessNotFound    = "ProcessNotFoundError"
)

// Error is an error answer from Garden (any non-2xx status).
type Error struct {
	Type    string // one of the Type constants, or "" for a plain error
	Message string
	Handle  string // ContainerNotFoundError
	Status  int
}

func (e *Error) Error() string {
	if e.Type == TypeContainerNotFound {
		// Garden's ContainerNotFoundError text.
		return "unknown handle: " + e.Handle
	}
	return e.Message
}

// Unrecoverable reports whether err is Garden's UnrecoverableError: the
// server will never answer, so waiting for it is pointless.
func Unrecoverable(err error) bool {
	var ge *Error
	return errors.As(err, &ge) && ge.Type == TypeUnrecoverable
}

// Client calls one Garden server. Safe for concurrent use.
type Client struct {
	http *http.Client
}

// dialTimeout is what Garden's own client allows for a connection.
const dialTimeout = 2 * time.Second

// New returns a client for Garden listening on network ("unix" or "tcp")
// at address (a socket path or host:port). Every request is bounded by
// timeout (none when zero).
func New(network, address string, timeout time.Duration) *Client {
	d := &net.Dialer{Timeout: dialTimeout}
	return &Client{http: &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, address)
			},
			// Garden's client does not keep connections either; a
			// restarted Garden then never sees a stale one.
			DisableKeepAlives: true,
		},
	}}
}

// Ping is GET /ping.
func (c *Client) Ping(ctx context.Context) error {
	var out struct{}
	return c.get(ctx, "/ping", nil, &out)
}

// Containers is GET /containers: the handles of the containers whose
// properties include every one of filter (all containers when empty).
func (c *Client) Containers(ctx context.Context, filter map[string]string) ([]string, error) {
	q := url.Values{}
	for k, v := range filter {
		q.Set(k, v)
	}
	var out struct {
		Handles []string
	}
	if err := c.get(ctx, "/containers", q, &out); err != nil {
		return nil, err
	}
	return out.Handles, nil
}

// Properties is GET /containers/:handle/properties.
func (c *Client) Properties(ctx context.Context, handle string) (map[string]string, error) {
	out := map[string]string{}
	if err := c.get(ctx, "/containers/"+url.PathEscape(handle)+"/properties", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// maxBody bounds what is read of one answer.
const maxBody = 64 << 20

func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	u := "http://api" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var doc struct {
			Type, Message, Handle string
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			// Garden's client words it so.
			return fmt.Errorf("bad response: %s", err)
		}
		return &Error{Type: doc.Type, Message: doc.Message, Handle: doc.Handle, Status: resp.StatusCode}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

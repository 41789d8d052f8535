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
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/netman-release/netman/src/jsonhttp"
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
	api jsonhttp.Client
}

// dialTimeout is what Garden's own client allows for a connection.
const dialTimeout = 2 * time.Second

// New returns a client for Garden listening on network ("unix" or "tcp")
// at address (a socket path or host:port). Every request is bounded by
// timeout (none when zero).
func New(network, address string, timeout time.Duration) *Client {
	d := &net.Dialer{Timeout: dialTimeout}
	hc := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, address)
			},
			// Garden's client does not keep connections either; a
			// restarted Garden then never sees a stale one.
			DisableKeepAlives: true,
		},
	}
	return &Client{api: jsonhttp.Client{HTTP: hc, Base: "http://api", Words: words}}
}

// words are Garden's client's for a failed call; an error answer is
// Garden's error document.
var words = jsonhttp.Words{
	Read: jsonhttp.Prefix("read response"),
	Decode: func(c jsonhttp.Call, err error) error {
		path, _, _ := strings.Cut(c.Path, "?")
		return fmt.Errorf("decode %s: %w", path, err)
	},
	Status: func(_ jsonhttp.Call, se *jsonhttp.StatusError) error {
		var doc struct {
			Type, Message, Handle string
		}
		if err := json.Unmarshal([]byte(se.Body), &doc); err != nil {
			// Garden's client words it so.
			return fmt.Errorf("bad response: %w", err)
		}
		return &Error{Type: doc.Type, Message: doc.Message, Handle: doc.Handle, Status: se.Code}
	},
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

func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	_, err := c.api.Do(ctx, jsonhttp.Request{Path: path}, out)
	return err
}

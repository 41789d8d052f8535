// Package jsonhttp is netman's one JSON-over-HTTP client, under every client
// of an HTTP API (policy-server's internal and external APIs, silk-controller,
// silk-daemon, UAA, Cloud Controller, the service-discovery controller,
// Garden): it builds the request, reads a bounded answer, returns a non-2xx
// answer as a *StatusError and decodes a 2xx one as JSON. Each client keeps
// its upstream's wording of failures in its Words.
package jsonhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// MaxBody bounds what is read of one answer, so a misbehaving server cannot
// exhaust a daemon's memory. The largest answers netman reads are far below
// it: a page of 5,000 security groups from Cloud Controller, or every policy
// of a foundation (60,000 policies are about 12 MiB).
const MaxBody = 256 << 20

// maxBody is MaxBody, lowered by the tests.
var maxBody = MaxBody

// ErrTooLarge is a 2xx answer longer than MaxBody; it is worded as a Decode
// failure (the answer is not the JSON expected).
var ErrTooLarge = fmt.Errorf("answer larger than %d bytes", MaxBody)

// Client calls one server. The zero value is not usable: HTTP must be set.
type Client struct {
	HTTP   *http.Client
	Base   string      // put before every Request.Path, e.g. "https://host:4003"
	Header http.Header // sent with every request (Accept, Authorization, ...)
	Words  Words
}

// Request is one call.
type Request struct {
	Method string // "" is GET
	Path   string // after the client's Base; may carry a query
	// Body is sent as a form when it is url.Values, as is (JSON already)
	// when it is []byte, and JSON-encoded otherwise; nil sends none.
	Body   any
	Header http.Header // on top of the client's
}

// Call is what a failure is worded with: the request as the client made it.
type Call struct {
	Method string
	Path   string // as in Request
	URL    string // Base + Path
}

// Words say how a client's upstream worded its failures. Each stage's
// function gets the call and the cause and returns the client's error; a nil
// one returns the cause as it is.
type Words struct {
	Request func(Call, error) error // the body would not encode or the request not build
	Send    func(Call, error) error // no answer: refused, timed out, TLS
	Read    func(Call, error) error // the answer broke off
	Decode  func(Call, error) error // a 2xx answer that is not the JSON expected, or ErrTooLarge
	// Status maps a non-2xx answer, usually to se.Reword(...) so errors.As
	// still finds the *StatusError; nil returns se.
	Status func(Call, *StatusError) error
}

// Prefix words a failure as "<p>: <cause>", keeping the cause for errors.Is.
func Prefix(p string) func(Call, error) error {
	return func(_ Call, err error) error { return fmt.Errorf("%s: %w", p, err) }
}

// Bare is a Send failure's cause without net/http's *url.Error around it
// ("Get \"<url>\": ..."), for clients that name the server themselves.
func Bare(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

func word(f func(Call, error) error, c Call, err error) error {
	if f == nil {
		return err
	}
	return f(c, err)
}

// StatusError is an answer whose status is not 2xx: the one error type every
// netman client returns for one, worded as that client's upstream words it.
type StatusError struct {
	Code   int    // e.g. 404
	Status string // e.g. "404 Not Found"
	Body   string // the answer, at most MaxBody bytes
	text   string // set by Reword
}

// Error is the text Reword gave, else "http status <code>: <trimmed body>".
func (e *StatusError) Error() string {
	if e.text != "" {
		return e.text
	}
	return fmt.Sprintf("http status %d: %s", e.Code, strings.TrimSpace(e.Body))
}

// Reword returns a copy of e whose Error is the text a client's upstream
// gave such an answer.
func (e *StatusError) Reword(format string, args ...any) *StatusError {
	c := *e
	c.text = fmt.Sprintf(format, args...)
	return &c
}

// Message is the "error" of upstream's error document ({"error": "..."}),
// or "" when the body is not one.
func (e *StatusError) Message() string {
	var doc struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(e.Body), &doc) != nil {
		return ""
	}
	return doc.Error
}

// excerptLen bounds Excerpt: enough for any API's error text, short enough
// for a log line when the answer is a proxy's HTML page.
const excerptLen = 512

// Excerpt is the trimmed body, cut after 512 bytes (marked "...").
func (e *StatusError) Excerpt() string {
	s := strings.TrimSpace(e.Body)
	if len(s) > excerptLen {
		s = s[:excerptLen] + "..."
	}
	return s
}

// Do makes the call and decodes a 2xx answer into out (nil: the answer is
// read, up to MaxBody, and dropped). It returns the answer's header, also with a
// *StatusError.
func (c *Client) Do(ctx context.Context, r Request, out any) (http.Header, error) {
	call := Call{Method: r.Method, Path: r.Path, URL: c.Base + r.Path}
	if call.Method == "" {
		call.Method = http.MethodGet
	}
	req, err := c.newRequest(ctx, call, r)
	if err != nil {
		return nil, word(c.Words.Request, call, err)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, word(c.Words.Send, call, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(maxBody)+1))
	if err != nil {
		return resp.Header, word(c.Words.Read, call, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := &StatusError{Code: resp.StatusCode, Status: resp.Status, Body: string(data[:min(len(data), maxBody)])}
		if c.Words.Status == nil {
			return resp.Header, se
		}
		return resp.Header, c.Words.Status(call, se)
	}
	if out == nil {
		return resp.Header, nil
	}
	if len(data) > maxBody {
		return resp.Header, word(c.Words.Decode, call, ErrTooLarge)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp.Header, word(c.Words.Decode, call, err)
	}
	return resp.Header, nil
}

func (c *Client) newRequest(ctx context.Context, call Call, r Request) (*http.Request, error) {
	var body io.Reader
	contentType := "application/json"
	switch b := r.Body.(type) {
	case nil:
	case url.Values:
		body, contentType = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	case []byte:
		body = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("marshal request: %w", err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, call.Method, call.URL, body)
	if err != nil {
		return nil, err
	}
	for _, h := range []http.Header{c.Header, r.Header} {
		for k, v := range h {
			req.Header[http.CanonicalHeaderKey(k)] = v
		}
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	return req, nil
}

// IsStatus reports whether err is a non-2xx answer with status code.
func IsStatus(err error, code int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == code
}

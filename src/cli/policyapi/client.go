// Package policyapi is a client of policy-server's external API (v0 and v1)
// for the command-line tools: it creates, deletes and lists policies with a
// caller's bearer token and turns failures into typed errors (the server's
// {"error": "..."} message with its status, or an unreachable server).
package policyapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/netman-release/netman/src/jsonhttp"
	"github.com/netman-release/netman/src/policy"
)

// Paths of the external API, as upstream.
const (
	PathV0 = "/networking/v0/external/policies"
	PathV1 = "/networking/v1/external/policies"
)

// Error is a non-2xx answer of the policy server.
type Error struct {
	Method     string
	URL        string
	StatusCode int
	// Message is the server's "error" text, or the raw body when it is not
	// upstream's error JSON.
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("http status %d: %s", e.StatusCode, e.Message)
}

// UnreachableError is a request that got no HTTP answer (refused, timed
// out, TLS failure, ...).
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach policy server at %s: %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Client talks to one policy server.
type Client struct {
	baseURL string
	api     jsonhttp.Client
}

// New returns a client of the external API under baseURL (e.g.
// "https://api.example.com", where the router sends /networking to
// policy-server, or "http://127.0.0.1:4002"). authorization is the
// Authorization header sent as is ("bearer <token>" as the cf CLI hands it
// out, or "Bearer <token>").
func New(baseURL string, httpClient *http.Client, authorization, userAgent string) *Client {
	if httpClient == nil {
		httpClient = NewHTTPClient(false, nil)
	}
	baseURL = strings.TrimRight(baseURL, "/")
	header := http.Header{"Accept": {"application/json"}}
	if authorization != "" {
		header.Set("Authorization", authorization)
	}
	if userAgent != "" {
		header.Set("User-Agent", userAgent)
	}
	return &Client{baseURL: baseURL, api: jsonhttp.Client{HTTP: httpClient, Base: baseURL, Header: header, Words: words(baseURL)}}
}

// words turn failures into the package's errors: no answer (or a broken
// one) is an UnreachableError, a non-2xx answer an *Error.
func words(baseURL string) jsonhttp.Words {
	unreachable := func(err error) error { return &UnreachableError{URL: baseURL, Err: err} }
	return jsonhttp.Words{
		Request: func(_ jsonhttp.Call, err error) error { return fmt.Errorf("policy server URL %q: %w", baseURL, err) },
		// The URL is said once, by UnreachableError.
		Send:   func(_ jsonhttp.Call, err error) error { return unreachable(jsonhttp.Bare(err)) },
		Read:   func(_ jsonhttp.Call, err error) error { return unreachable(fmt.Errorf("reading answer: %w", err)) },
		Decode: jsonhttp.Prefix("decoding policies"),
		Status: func(c jsonhttp.Call, se *jsonhttp.StatusError) error {
			return &Error{Method: c.Method, URL: c.URL, StatusCode: se.Code, Message: errorMessage(se)}
		},
	}
}

// BaseURL is the server the client talks to.
func (c *Client) BaseURL() string { return c.baseURL }

// NewHTTPClient returns an HTTP client as the upstream plugin built it:
// connections time out after 3 s, certificates are verified unless
// skipSSLValidation. wrap, when set, wraps the transport (request tracing).
// Whole requests are bounded at 60 s so a hung server cannot hang a script.
func NewHTTPClient(skipSSLValidation bool, wrap func(http.RoundTripper) http.RoundTripper) *http.Client {
	var rt http.RoundTripper = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: skipSSLValidation, //nolint:gosec // the user's --skip-ssl-validation
		},
	}
	if wrap != nil {
		rt = wrap(rt)
	}
	return &http.Client{Transport: rt, Timeout: 60 * time.Second}
}

// CreatePolicies creates policies with the v1 API (port ranges).
func (c *Client) CreatePolicies(ctx context.Context, policies []policy.Policy) error {
	return c.post(ctx, PathV1, v1Body(policies))
}

// DeletePolicies deletes policies with the v1 API. Deleting a policy that
// does not exist succeeds.
func (c *Client) DeletePolicies(ctx context.Context, policies []policy.Policy) error {
	return c.post(ctx, PathV1+"/delete", v1Body(policies))
}

// CreatePoliciesV0 creates single-port policies with the v0 API.
func (c *Client) CreatePoliciesV0(ctx context.Context, policies []policy.Policy) error {
	body, err := v0Body(policies)
	if err != nil {
		return err
	}
	return c.post(ctx, PathV0, body)
}

// DeletePoliciesV0 deletes single-port policies with the v0 API.
func (c *Client) DeletePoliciesV0(ctx context.Context, policies []policy.Policy) error {
	body, err := v0Body(policies)
	if err != nil {
		return err
	}
	return c.post(ctx, PathV0+"/delete", body)
}

// ListPolicies lists the policies the caller may see with the v1 API; with
// ids, only those whose source or destination is one of them.
func (c *Client) ListPolicies(ctx context.Context, ids ...string) ([]policy.Policy, error) {
	return list[wirePolicyV1](ctx, c, PathV1+idQuery(ids))
}

// ListPoliciesV0 is ListPolicies with the v0 API (single-port policies only).
func (c *Client) ListPoliciesV0(ctx context.Context, ids ...string) ([]policy.Policy, error) {
	return list[wirePolicyV0](ctx, c, PathV0+idQuery(ids))
}

// list reads one version's policy list.
func list[W interface{ policy() policy.Policy }](ctx context.Context, c *Client, path string) ([]policy.Policy, error) {
	var resp struct {
		Policies []W `json:"policies"`
	}
	if _, err := c.api.Do(ctx, jsonhttp.Request{Path: path}, &resp); err != nil {
		return nil, err
	}
	out := make([]policy.Policy, len(resp.Policies))
	for i, p := range resp.Policies {
		out[i] = p.policy()
	}
	return out, nil
}

// idQuery is "?id=a,b" with literal commas, as the cf CLI sends it.
func idQuery(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	esc := make([]string, len(ids))
	for i, id := range ids {
		esc[i] = url.QueryEscape(id)
	}
	return "?id=" + strings.Join(esc, ",")
}

// Wire shapes of requests, field order as upstream's clients send them.
type (
	wireSource struct {
		ID string `json:"id"`
	}
	wirePorts struct {
		Start int `json:"start"`
		End   int `json:"end"`
	}
	wireDestV1 struct {
		ID       string    `json:"id"`
		Protocol string    `json:"protocol"`
		Ports    wirePorts `json:"ports"`
	}
	wireDestV0 struct {
		ID       string `json:"id"`
		Protocol string `json:"protocol"`
		Port     int    `json:"port"`
	}
	wirePolicyV1 struct {
		Source      wireSource `json:"source"`
		Destination wireDestV1 `json:"destination"`
	}
	wirePolicyV0 struct {
		Source      wireSource `json:"source"`
		Destination wireDestV0 `json:"destination"`
	}
)

func (p wirePolicyV1) policy() policy.Policy {
	d := p.Destination
	return policy.NewPolicy(p.Source.ID, d.ID, d.Protocol, d.Ports.Start, d.Ports.End)
}

func (p wirePolicyV0) policy() policy.Policy {
	d := p.Destination
	return policy.NewPolicy(p.Source.ID, d.ID, d.Protocol, d.Port, d.Port)
}

func v1Body(policies []policy.Policy) []byte {
	out := struct {
		Policies []wirePolicyV1 `json:"policies"`
	}{Policies: make([]wirePolicyV1, len(policies))}
	for i, p := range policies {
		out.Policies[i] = wirePolicyV1{
			Source: wireSource{ID: p.Source.ID},
			Destination: wireDestV1{
				ID: p.Destination.ID, Protocol: p.Destination.Protocol,
				Ports: wirePorts{Start: p.Destination.Ports.Start, End: p.Destination.Ports.End},
			},
		}
	}
	b, _ := json.Marshal(out) // strings and ints always marshal
	return b
}

func v0Body(policies []policy.Policy) ([]byte, error) {
	out := struct {
		Policies []wirePolicyV0 `json:"policies"`
	}{Policies: make([]wirePolicyV0, len(policies))}
	for i, p := range policies {
		if p.Destination.Ports.Start != p.Destination.Ports.End {
			return nil, fmt.Errorf("policyapi: the v0 API takes single ports, not %d-%d", p.Destination.Ports.Start, p.Destination.Ports.End)
		}
		out.Policies[i] = wirePolicyV0{
			Source:      wireSource{ID: p.Source.ID},
			Destination: wireDestV0{ID: p.Destination.ID, Protocol: p.Destination.Protocol, Port: p.Destination.Ports.Start},
		}
	}
	b, _ := json.Marshal(out)
	return b, nil
}

func (c *Client) post(ctx context.Context, path string, body []byte) error {
	_, err := c.api.Do(ctx, jsonhttp.Request{Method: http.MethodPost, Path: path, Body: body}, nil)
	return err
}

// errorMessage is the "error" of upstream's error JSON, else the trimmed
// body (e.g. a router's or proxy's page).
func errorMessage(se *jsonhttp.StatusError) string {
	if m := se.Message(); m != "" {
		return m
	}
	if s := se.Excerpt(); s != "" {
		return s
	}
	return "(empty body)"
}

// Printable replaces the control characters of a name to be printed (app
// names are user input) so that it can neither break a table nor drive the
// terminal.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

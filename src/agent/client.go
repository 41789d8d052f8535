package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/netman-release/netman/src/agent/c2c"
	"github.com/netman-release/netman/src/jsonhttp"
	"github.com/netman-release/netman/src/policy"
)

// Client calls policy-server-internal's API over mTLS, with upstream's
// paths, query parameters and bodies, plus netman's long-poll form of
// policies_last_updated when the server offers it.
//
// It keeps at most two connections to the server, as upstream's agent:
// one for plain requests (policies, tags, security groups: the policy
// cycle, the ASG poll and the force endpoints) and one for long-polls.
// Each transport is capped at one connection, so a parked long-poll never
// holds up a plain request and concurrent plain requests never open a
// third connection. Both offer HTTP/2: netman's server accepts it (Go's
// ServeTLS), and then every plain request shares the one connection
// without waiting, as do all long-polls (the policies one and any later
// one, e.g. for security groups). Upstream's server speaks only HTTP/1.1
// (no ALPN) and offers no long-poll; there concurrent plain requests take
// turns on the one connection, as they would on upstream's two pollers.
type Client struct {
	http     *jsonhttp.Client // bounded by client_timeout_seconds
	longPoll *jsonhttp.Client // no overall timeout: long-polls bound themselves
}

// longPollHeader is set on every policies_last_updated answer of a server
// that supports ?wait=&since= (policy-server-internal's LongPollHeader).
const longPollHeader = "X-Netman-Long-Poll"

// NewClient returns a client for baseURL (policy_server_url) with tlsConfig
// (nil for plain HTTP) and timeout per plain request.
func NewClient(baseURL string, tlsConfig *tls.Config, timeout time.Duration) *Client {
	return newClient(baseURL, tlsConfig, timeout, http2Health)
}

// http2Health closes an HTTP/2 connection that has been silent for 10 s
// and does not answer a ping within 5 s. An HTTP/2 connection outlives the
// requests that time out on it, and with one connection per transport a
// dead one (a server host gone without closing it) would otherwise take
// every later request down with it; over HTTP/1.1 the timed-out request
// closes its connection.
var http2Health = http.HTTP2Config{SendPingTimeout: 10 * time.Second, PingTimeout: 5 * time.Second}

// words are upstream's (its json_client's) for a failed call.
var words = jsonhttp.Words{Read: jsonhttp.Prefix("read body"), Decode: jsonhttp.Prefix("json unmarshal")}

func newClient(baseURL string, tlsConfig *tls.Config, timeout time.Duration, health http.HTTP2Config) *Client {
	base := strings.TrimRight(baseURL, "/")
	return &Client{
		http:     &jsonhttp.Client{HTTP: &http.Client{Transport: newTransport(tlsConfig, health), Timeout: timeout}, Base: base, Words: words},
		longPoll: &jsonhttp.Client{HTTP: &http.Client{Transport: newTransport(tlsConfig, health)}, Base: base, Words: words},
	}
}

// newTransport keeps one connection to the server, kept alive between
// requests (the policy cycle and long-polls come back within seconds;
// the server closes it after its own idle timeout) and multiplexed over
// HTTP/2 where the server offers it.
func newTransport(tlsConfig *tls.Config, health http.HTTP2Config) *http.Transport {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	return &http.Transport{
		// Each transport its own copy: the first request of a transport
		// adds its protocols to the config's NextProtos, so two transports
		// sharing one config (this client's two, or the clients of
		// netman-fleet's cells) race on it.
		TLSClientConfig:     tlsConfig.Clone(),
		Protocols:           protocols,
		HTTP2:               &health,
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
}

// WrapTransports replaces the transport of plain requests and that of
// long-polls with wrap's (netman-fleet times every request through it).
func (c *Client) WrapTransports(wrap func(longPoll bool, rt http.RoundTripper) http.RoundTripper) {
	c.http.HTTP.Transport = wrap(false, c.http.HTTP.Transport)
	c.longPoll.HTTP.Transport = wrap(true, c.longPoll.HTTP.Transport)
}

// CloseIdleConnections closes the client's idle connections.
func (c *Client) CloseIdleConnections() {
	c.http.HTTP.CloseIdleConnections()
	c.longPoll.HTTP.CloseIdleConnections()
}

// StatusError is a non-2xx answer ("http status <code>: <body>").
type StatusError = jsonhttp.StatusError

// Policies fetches the policies whose source or destination is one of ids;
// with no ids, every policy (the start-up check). An answer that is not
// the policies document (e.g. no total_policies) is an error, so garbage
// never becomes an empty rule set.
func (c *Client) Policies(ctx context.Context, ids ...string) ([]c2c.Policy, error) {
	var w policy.InternalPolicies
	if _, err := c.http.Do(ctx, jsonhttp.Request{Path: policy.InternalPoliciesPath(ids...)}, &w); err != nil {
		return nil, err
	}
	if w.TotalPolicies == nil {
		return nil, errors.New("json unmarshal: policies response has no total_policies")
	}
	out := make([]c2c.Policy, 0, len(w.Policies))
	for _, p := range w.Policies {
		out = append(out, c2c.Policy{
			Source: c2c.Endpoint{ID: p.Source.ID, Tag: p.Source.Tag},
			Destination: c2c.Destination{
				ID: p.Destination.ID, Tag: p.Destination.Tag, Protocol: p.Destination.Protocol,
				Start: p.Destination.Ports.Start, End: p.Destination.Ports.End,
			},
		})
	}
	return out, nil
}

// Version endpoints: bare integers that move when the data behind them
// changes.
const (
	policiesLastUpdatedPath       = "/networking/v1/internal/policies_last_updated"
	securityGroupsLastUpdatedPath = "/networking/v1/internal/security_groups_last_updated"
)

// LastUpdated is a plain read of policies_last_updated. longPoll reports
// whether the server offers the long-poll form.
func (c *Client) LastUpdated(ctx context.Context) (v int64, longPoll bool, err error) {
	return c.readVersion(ctx, policiesLastUpdatedPath)
}

// WaitLastUpdated long-polls policies_last_updated: it returns as soon as
// the value differs from since, or since itself after about wait. The
// request is bounded by wait plus grace. longPoll is false when the answer
// did not come from a long-poll capable server (which then answered at
// once, ignoring the wait).
func (c *Client) WaitLastUpdated(ctx context.Context, since int64, wait, grace time.Duration) (v int64, longPoll bool, err error) {
	s, err := c.waitVersion(ctx, policiesLastUpdatedPath, since, nil, wait, grace)
	return s.Value, s.LongPoll, err
}

// Stamp is the answer of a long-poll of policies_last_updated.
type Stamp struct {
	Value int64
	// Unchanged: Value is a later stamp than since at which the policies
	// of the ids asked about are what they were at since.
	Unchanged bool
	// LongPoll: the answer came from a long-poll capable server.
	LongPoll bool
}

// WaitPolicies is WaitLastUpdated for the policies of ids (the cell's app
// and space guids, as given to Policies; nil: every change): netman's
// server answers before wait only when a change touched one of them, and
// after it with the latest stamp at which they are unchanged. An upstream
// server ignores ids.
func (c *Client) WaitPolicies(ctx context.Context, since int64, ids []string, wait, grace time.Duration) (Stamp, error) {
	return c.waitVersion(ctx, policiesLastUpdatedPath, since, ids, wait, grace)
}

// SecurityGroupsLastUpdated is a plain read of newer upstream's
// security_groups_last_updated. A server without it (upstream v3.53.0)
// answers 404: a *StatusError with Code 404.
func (c *Client) SecurityGroupsLastUpdated(ctx context.Context) (v int64, longPoll bool, err error) {
	return c.readVersion(ctx, securityGroupsLastUpdatedPath)
}

// WaitSecurityGroupsLastUpdated long-polls security_groups_last_updated,
// as WaitLastUpdated does policies_last_updated, over the same long-poll
// client (and so the same connections).
func (c *Client) WaitSecurityGroupsLastUpdated(ctx context.Context, since int64, wait, grace time.Duration) (v int64, longPoll bool, err error) {
	s, err := c.waitVersion(ctx, securityGroupsLastUpdatedPath, since, nil, wait, grace)
	return s.Value, s.LongPoll, err
}

func (c *Client) readVersion(ctx context.Context, path string) (v int64, longPoll bool, err error) {
	h, err := c.http.Do(ctx, jsonhttp.Request{Path: path}, &v)
	if err != nil {
		return 0, false, err
	}
	return v, h.Get(longPollHeader) == "1", nil
}

// unchangedSinceHeader marks a targeted long-poll's answer as unchanged
// since the since it echoes (policy-server-internal's
// UnchangedSinceHeader).
const unchangedSinceHeader = "X-Netman-Unchanged-Since"

func (c *Client) waitVersion(ctx context.Context, path string, since int64, ids []string, wait, grace time.Duration) (Stamp, error) {
	ctx, cancel := context.WithTimeout(ctx, wait+grace)
	defer cancel()
	q := url.Values{}
	q.Set("wait", strconv.FormatFloat(wait.Seconds(), 'f', -1, 64))
	q.Set("since", strconv.FormatInt(since, 10))
	if ids != nil {
		q.Set("id", strings.Join(ids, ","))
	}
	var v int64
	h, err := c.longPoll.Do(ctx, jsonhttp.Request{Path: path + "?" + q.Encode()}, &v)
	if err != nil {
		return Stamp{}, err
	}
	sinceStr := strconv.FormatInt(since, 10)
	return Stamp{Value: v, LongPoll: h.Get(longPollHeader) == "1", Unchanged: v != since && h.Get(unchangedSinceHeader) == sinceStr}, nil
}

// CreateOrGetTag asks for the tag of a non-app group (the ingress router).
func (c *Client) CreateOrGetTag(ctx context.Context, id, groupType string) (string, error) {
	var out struct {
		ID   string `json:"id"`
		Type string `json:"type"`
		Tag  string `json:"tag"`
	}
	body := struct {
		ID   string `json:"ID"`
		Type string `json:"Type"`
	}{id, groupType}
	if _, err := c.http.Do(ctx, jsonhttp.Request{Method: http.MethodPut, Path: "/networking/v1/internal/tags", Body: body}, &out); err != nil {
		return "", err
	}
	if out.Tag == "" {
		return "", errors.New("json unmarshal: tag response has no tag")
	}
	return out.Tag, nil
}

// perPage is what upstream's client asks for (the server ignores it).
const perPage = 5000

// maxPages stops a server that never ends its paging.
const maxPages = 100000

// SecurityGroups fetches every security group that is a default or bound
// to one of spaceGUIDs (all groups when none are given), following next.
func (c *Client) SecurityGroups(ctx context.Context, spaceGUIDs []string) ([]policy.SecurityGroup, error) {
	var all []policy.SecurityGroup
	from := 0
	for page := 0; page < maxPages; page++ {
		q := "per_page=" + strconv.Itoa(perPage)
		if len(spaceGUIDs) > 0 {
			q += "&space_guids=" + url.QueryEscape(strings.Join(spaceGUIDs, ","))
		}
		if from != 0 {
			q += "&from=" + strconv.Itoa(from)
		}
		var w struct {
			Next           *int `json:"next"`
			SecurityGroups []struct {
				GUID              string   `json:"guid"`
				Name              string   `json:"name"`
				Rules             string   `json:"rules"`
				StagingDefault    bool     `json:"staging_default"`
				RunningDefault    bool     `json:"running_default"`
				StagingSpaceGUIDs []string `json:"staging_space_guids"`
				RunningSpaceGUIDs []string `json:"running_space_guids"`
			} `json:"security_groups"`
		}
		if _, err := c.http.Do(ctx, jsonhttp.Request{Path: "/networking/v1/internal/security_groups?" + q}, &w); err != nil {
			return nil, err
		}
		if w.Next == nil {
			return nil, errors.New("json unmarshal: security groups response has no next")
		}
		for _, g := range w.SecurityGroups {
			all = append(all, policy.SecurityGroup{
				GUID: g.GUID, Name: g.Name, Rules: g.Rules,
				StagingDefault: g.StagingDefault, RunningDefault: g.RunningDefault,
				StagingSpaceGUIDs: g.StagingSpaceGUIDs, RunningSpaceGUIDs: g.RunningSpaceGUIDs,
			})
		}
		if *w.Next == 0 {
			return all, nil
		}
		if *w.Next <= from {
			return nil, fmt.Errorf("security groups paging went backwards (next %d after from %d)", *w.Next, from)
		}
		from = *w.Next
	}
	return nil, errors.New("security groups paging did not end")
}

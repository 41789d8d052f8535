package observe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/netman-release/netman/src/jsonhttp"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/policy"
)

// PolicySource is where a trace and the graph read policies: the
// policies naming any of ids (none: every policy), with their tags, and
// policies_last_updated (0 when the source has none).
type PolicySource interface {
	Policies(ctx context.Context, ids ...string) ([]policy.Policy, error)
	LastUpdated(ctx context.Context) (int64, error)
}

// Cell is one cell's agent, as its debug server shows it.
type Cell interface {
	// Name says which cell it is in output (its debug endpoint).
	Name() string
	Containers(ctx context.Context) (Containers, error)
	Enforced(ctx context.Context) (Enforced, error)
}

// InternalAPI reads policy-server-internal's API over mTLS.
type InternalAPI struct{ c *jsonhttp.Client }

// NewInternalAPI is a client of the internal API at baseURL (e.g.
// https://policy-server.service.cf.internal:4003) with a client pair
// signed by the CA the server trusts (the agent's, in a deployment).
// serverName, when set, is the name the server's certificate must carry
// (policy-server.service.cf.internal when dialling an IP); "" checks the
// dialled host.
func NewInternalAPI(baseURL, caFile, certFile, keyFile, serverName string, timeout time.Duration) (*InternalAPI, error) {
	var cfg *tls.Config
	if strings.HasPrefix(baseURL, "https:") {
		var opts []mtls.Option
		if serverName != "" {
			opts = append(opts, mtls.WithServerName(serverName))
		}
		var err error
		if cfg, err = mtls.ClientConfig(certFile, keyFile, caFile, opts...); err != nil {
			return nil, fmt.Errorf("internal API credentials: %w", err)
		}
	}
	return &InternalAPI{c: &jsonhttp.Client{
		HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: timeout},
		Base: strings.TrimRight(baseURL, "/"),
	}}, nil
}

// Policies is GET /networking/v1/internal/policies[?id=...].
func (a *InternalAPI) Policies(ctx context.Context, ids ...string) ([]policy.Policy, error) {
	var w policy.InternalPolicies
	if _, err := a.c.Do(ctx, jsonhttp.Request{Path: policy.InternalPoliciesPath(ids...)}, &w); err != nil {
		return nil, fmt.Errorf("policy-server-internal: %w", err)
	}
	if w.TotalPolicies == nil {
		return nil, errors.New("policy-server-internal: answer has no total_policies (is it the internal API?)")
	}
	out := make([]policy.Policy, 0, len(w.Policies))
	for _, p := range w.Policies {
		q := policy.NewPolicy(p.Source.ID, p.Destination.ID, p.Destination.Protocol, p.Destination.Ports.Start, p.Destination.Ports.End)
		q.Source.Tag, q.Destination.Tag = p.Source.Tag, p.Destination.Tag
		out = append(out, q)
	}
	return out, nil
}

// LastUpdated is GET /networking/v1/internal/policies_last_updated.
func (a *InternalAPI) LastUpdated(ctx context.Context) (int64, error) {
	var v int64
	if _, err := a.c.Do(ctx, jsonhttp.Request{Path: "/networking/v1/internal/policies_last_updated"}, &v); err != nil {
		return 0, fmt.Errorf("policy-server-internal: %w", err)
	}
	return v, nil
}

// AgentDebug reads a cell agent's debug server (debug_server_host:port).
type AgentDebug struct {
	name string
	c    *jsonhttp.Client
}

// NewAgentDebug is a client of the agent debug server at baseURL, e.g.
// http://10.0.16.5:8721.
func NewAgentDebug(baseURL string, timeout time.Duration) *AgentDebug {
	base := strings.TrimRight(baseURL, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	name := base
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		name = u.Host
	}
	return &AgentDebug{name: name, c: &jsonhttp.Client{HTTP: &http.Client{Timeout: timeout}, Base: base}}
}

// Name is the endpoint's host:port.
func (d *AgentDebug) Name() string { return d.name }

// Containers is GET /c2c-containers.
func (d *AgentDebug) Containers(ctx context.Context) (Containers, error) {
	var c Containers
	_, err := d.c.Do(ctx, jsonhttp.Request{Path: PathContainers}, &c)
	return c, err
}

// Enforced is GET /c2c-enforced.
func (d *AgentDebug) Enforced(ctx context.Context) (Enforced, error) {
	var e Enforced
	_, err := d.c.Do(ctx, jsonhttp.Request{Path: PathEnforced}, &e)
	return e, err
}

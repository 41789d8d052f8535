// Package external is policy-server's external API (v0 and v1): the route
// table, upstream's wrappers (security and CORS headers, request ids,
// per-route metrics, version check, token authentication, body limit) and
// the handlers for whoami, policies create/delete/list/cleanup, tags,
// uptime and health. Who may do what is decided by package auth; policies
// are kept by the store.
package external

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/auth"
	"github.com/netman-release/netman/src/policyserver/router"
)

// Store is the part of the policy store the external API uses.
// *store.Store satisfies it.
type Store interface {
	Create(ctx context.Context, policies []policy.Policy) error
	Delete(ctx context.Context, policies []policy.Policy) error
	All(ctx context.Context) ([]policy.Policy, error)
	ByGuids(ctx context.Context, srcGuids, destGuids []string, inSourceAndDest bool) ([]policy.Policy, error)
	Tags(ctx context.Context) ([]policy.Tag, error)
	CheckDatabase(ctx context.Context) error
}

// Quota decides whether a create stays within max_policies (*auth.Quota).
type Quota interface {
	CheckQuota(ctx context.Context, tok auth.Token, policies []policy.Policy) (bool, error)
}

// Cleaner deletes stale policies (*cleanup.Cleaner).
type Cleaner interface {
	DeleteStalePolicies(ctx context.Context) ([]policy.Policy, error)
}

// Route metric names (upstream's <Name>RequestTime / <Name>RequestCount).
const (
	RouteUptime         = "Uptime"
	RouteHealth         = "Health"
	RouteWhoAmI         = "WhoAmI"
	RouteCreatePolicies = "CreatePolicies"
	RouteDeletePolicies = "DeletePolicies"
	RoutePoliciesIndex  = "PoliciesIndex"
	RouteCleanup        = "Cleanup"
	RouteTagsIndex      = "TagsIndex"
)

// Options are the API's collaborators and settings.
type Options struct {
	Store    Store
	Verifier auth.Verifier
	Access   auth.Access
	Quota    Quota
	// Cleaner may be nil (opt-in file auth has no Cloud Controller to ask
	// which apps exist): the cleanup route then deletes nothing.
	Cleaner Cleaner
	Metrics Metrics

	// EnableSpaceDeveloperSelfService turns the scope check off on the
	// write routes (create, delete, list).
	EnableSpaceDeveloperSelfService bool
	// EnableTLS adds Strict-Transport-Security to every response.
	EnableTLS          bool
	AllowedCORSDomains []string
	// Start is the process start, for the uptime text.
	Start time.Time
}

// API serves the external routes.
type API struct {
	logger lager.Logger
	opts   Options
	cors   []corsRoute
}

type corsRoute struct {
	method  string
	pattern *regexp.Regexp
}

// New returns the API; logger is the daemon's logger (request sessions are
// made under it).
func New(logger lager.Logger, opts Options) *API {
	if opts.Start.IsZero() {
		opts.Start = time.Now()
	}
	a := &API{logger: logger, opts: opts}
	for _, r := range a.table() {
		a.cors = append(a.cors, corsRoute{method: r.Method, pattern: corsPattern(r.Path)})
	}
	for _, p := range optionsPaths(a.table()) {
		a.cors = append(a.cors, corsRoute{method: http.MethodOptions, pattern: corsPattern(p)})
	}
	return a
}

const (
	pathWhoAmI   = "/networking/:version/external/whoami"
	pathPolicies = "/networking/:version/external/policies"
	pathDelete   = "/networking/:version/external/policies/delete"
	pathCleanup  = "/networking/:version/external/policies/cleanup"
	pathTags     = "/networking/:version/external/tags"
)

// table is upstream's route table, in upstream's order (it decides the
// CORS method lists and the Allow header of 405s).
func (a *API) table() []router.Route {
	selfService := a.opts.EnableSpaceDeveloperSelfService
	admin := func(h http.HandlerFunc) http.Handler { return a.checkVersion(a.authenticate(adminScopes, true, h)) }
	write := func(h http.HandlerFunc) http.Handler {
		return a.checkVersion(a.authenticate(writeScopes, !selfService, h))
	}
	return []router.Route{
		{Method: http.MethodGet, Path: "/", Name: RouteUptime, Handler: http.HandlerFunc(a.uptime)},
		{Method: http.MethodGet, Path: "/networking", Name: RouteUptime, Handler: http.HandlerFunc(a.uptime)},
		{Method: http.MethodGet, Path: "/health", Name: RouteHealth, Handler: http.HandlerFunc(a.health)},
		{Method: http.MethodGet, Path: pathWhoAmI, Name: RouteWhoAmI, Handler: admin(a.whoami)},
		{Method: http.MethodPost, Path: pathPolicies, Name: RouteCreatePolicies, Handler: write(a.createPolicies)},
		{Method: http.MethodPost, Path: pathDelete, Name: RouteDeletePolicies, Handler: write(a.deletePolicies)},
		{Method: http.MethodGet, Path: pathPolicies, Name: RoutePoliciesIndex, Handler: write(a.indexPolicies)},
		{Method: http.MethodPost, Path: pathCleanup, Name: RouteCleanup, Handler: admin(a.cleanup)},
		{Method: http.MethodGet, Path: pathTags, Name: RouteTagsIndex, Handler: admin(a.tags)},
	}
}

// optionsPaths are the distinct paths of the table, in order: each gets an
// OPTIONS route (CORS preflight).
func optionsPaths(table []router.Route) []string {
	var paths []string
	seen := map[string]bool{}
	for _, r := range table {
		if !seen[r.Path] {
			seen[r.Path] = true
			paths = append(paths, r.Path)
		}
	}
	return paths
}

// Handler returns the external server's handler.
func (a *API) Handler() http.Handler {
	table := a.table()
	rt := make(router.Router, 0, 2*len(table))
	for _, r := range table {
		r.Handler = a.securityHeaders(a.timed(r.Name, a.logRequests(r.Handler)))
		rt = append(rt, r)
	}
	// Preflight: 200 with an empty body, no auth, no version check, no
	// request log or metrics, as upstream.
	options := a.securityHeaders(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for _, p := range optionsPaths(table) {
		rt = append(rt, router.Route{Method: http.MethodOptions, Path: p, Handler: options})
	}
	return rt
}

func (a *API) uptime(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = fmt.Fprintf(w, "Network policy server, up for %v\n", time.Since(a.opts.Start))
}

func (a *API) health(w http.ResponseWriter, r *http.Request) {
	if err := a.opts.Store.CheckDatabase(r.Context()); err != nil {
		a.fail(w, r, a.requestLogger(r), http.StatusInternalServerError, err, "check database failed")
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (a *API) whoami(w http.ResponseWriter, r *http.Request) {
	body, err := json.Marshal(struct {
		Subject string `json:"subject"`
	}{tokenOf(r).WhoAmI()})
	if err != nil {
		a.fail(w, r, a.requestLogger(r), http.StatusInternalServerError, err, "marshal response failed")
		return
	}
	writeJSON(w, body)
}

// mapBody decodes a create or delete body in the route's version.
func mapBody(version string, body []byte) ([]policy.Policy, error) {
	if version == "v0" {
		return policy.MapV0(body)
	}
	return policy.MapV1(body)
}

// marshalPolicies encodes a list answer in the route's version.
func marshalPolicies(version string, ps []policy.Policy) []byte {
	if version == "v0" {
		return policy.MarshalV0(ps)
	}
	return policy.MarshalV1(ps)
}

// readAuthorized is the part create and delete share: read and map the
// body, then the policy guard. done reports that an error was written.
// Upstream words a body read failure differently for the two routes.
func (a *API) readAuthorized(w http.ResponseWriter, r *http.Request, logger lager.Logger, readFailed string, forCreate bool) (tok auth.Token, policies []policy.Policy, done bool) {
	tok = tokenOf(r)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		a.fail(w, r, logger, http.StatusBadRequest, err, readFailed)
		return tok, nil, true
	}
	policies, err = mapBody(r.PathValue("version"), body)
	if err != nil {
		a.fail(w, r, logger, http.StatusBadRequest, err, "mapper: "+err.Error())
		return tok, nil, true
	}
	ok, err := a.opts.Access.CheckAccess(r.Context(), tok, policies, forCreate)
	if err != nil {
		a.fail(w, r, logger, http.StatusInternalServerError, err, "check access failed")
		return tok, nil, true
	}
	if !ok {
		const denied = "one or more applications cannot be found or accessed"
		a.fail(w, r, logger, http.StatusForbidden, errors.New(denied), denied)
		return tok, nil, true
	}
	return tok, policies, false
}

func (a *API) createPolicies(w http.ResponseWriter, r *http.Request) {
	logger := a.requestLogger(r).Session("create-policies")
	tok, policies, done := a.readAuthorized(w, r, logger, "failed reading request body", true)
	if done {
		return
	}
	ok, err := a.opts.Quota.CheckQuota(r.Context(), tok, policies)
	if err != nil {
		a.fail(w, r, logger, http.StatusInternalServerError, err, "check quota failed")
		return
	}
	if !ok {
		a.fail(w, r, logger, http.StatusForbidden, fmt.Errorf("policy quota exceeded"), "policy quota exceeded")
		return
	}
	a.write(w, r, logger, a.opts.Store.Create, "database create failed", "created-policies", tok, policies)
}

func (a *API) deletePolicies(w http.ResponseWriter, r *http.Request) {
	logger := a.requestLogger(r).Session("delete-policies")
	tok, policies, done := a.readAuthorized(w, r, logger, "invalid request body", false)
	if done {
		return
	}
	a.write(w, r, logger, a.opts.Store.Delete, "database delete failed", "deleted-policies", tok, policies)
}

// write stores the change and answers {} with upstream's log line (done),
// or 500 with failed.
func (a *API) write(w http.ResponseWriter, r *http.Request, logger lager.Logger, change func(context.Context, []policy.Policy) error, failed, done string, tok auth.Token, policies []policy.Policy) {
	if err := change(r.Context(), policies); err != nil {
		a.fail(w, r, logger, http.StatusInternalServerError, err, failed)
		return
	}
	logger.Info(done, lager.Data{"policies": json.RawMessage(policy.AppendV1List(nil, policies)), "userName": tok.UserName})
	writeJSON(w, []byte("{}"))
}

// listParam is upstream's query parsing: the first occurrence of key,
// split on ",". Absent → nil; present but empty → [""] (matches nothing).
func listParam(r *http.Request, key string) []string {
	vs, ok := r.URL.Query()[key]
	if !ok {
		return nil
	}
	return strings.Split(vs[0], ",")
}

func (a *API) indexPolicies(w http.ResponseWriter, r *http.Request) {
	logger := a.requestLogger(r).Session("index-policies")
	ids, srcIDs, dstIDs := listParam(r, "id"), listParam(r, "source_id"), listParam(r, "dest_id")
	ctx := r.Context()
	var policies []policy.Policy
	var err error
	switch {
	case len(ids) > 0:
		policies, err = a.opts.Store.ByGuids(ctx, ids, ids, false)
	case len(srcIDs) > 0 && len(dstIDs) > 0:
		policies, err = a.opts.Store.ByGuids(ctx, srcIDs, dstIDs, true)
	case len(srcIDs) > 0:
		policies, err = a.opts.Store.ByGuids(ctx, srcIDs, nil, false)
	case len(dstIDs) > 0:
		policies, err = a.opts.Store.ByGuids(ctx, nil, dstIDs, false)
	default:
		policies, err = a.opts.Store.All(ctx)
	}
	if err != nil {
		a.fail(w, r, logger, http.StatusInternalServerError, err, "database read failed")
		return
	}
	policies, err = a.opts.Access.FilterPolicies(ctx, tokenOf(r), policies)
	if err != nil {
		a.fail(w, r, logger, http.StatusInternalServerError, err, "filter policies failed")
		return
	}
	writeJSON(w, marshalPolicies(r.PathValue("version"), policy.WithoutTags(policies)))
}

func (a *API) cleanup(w http.ResponseWriter, r *http.Request) {
	logger := a.requestLogger(r).Session("cleanup-policies")
	deleted := []policy.Policy{}
	if a.opts.Cleaner != nil {
		var err error
		deleted, err = a.opts.Cleaner.DeleteStalePolicies(r.Context())
		if err != nil {
			a.fail(w, r, logger, http.StatusInternalServerError, err, "policies cleanup failed")
			return
		}
	}
	// v1 shape whatever the version, as upstream.
	writeJSON(w, policy.MarshalV1(policy.WithoutTags(deleted)))
}

func (a *API) tags(w http.ResponseWriter, r *http.Request) {
	tags, err := a.opts.Store.Tags(r.Context())
	if err != nil {
		a.fail(w, r, a.requestLogger(r), http.StatusInternalServerError, err, "database read failed")
		return
	}
	writeJSON(w, policy.MarshalTags(tags))
}

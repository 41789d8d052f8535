// Package internalapi is policy-server-internal: the mutual-TLS API that
// vxlan-policy-agents and other cell components call for the policies of
// their apps (with tags), the policies_last_updated version, tags for
// non-app groups, the application security groups and their
// security_groups_last_updated version, plus the daemon's plain health
// server and its wiring (Run). It also owns netman's long-poll extension of
// both version endpoints (see Watcher).
package internalapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/router"
	"github.com/netman-release/netman/src/policyserver/store"
)

// Route names used for upstream's <Name>RequestTime / <Name>RequestCount.
const (
	RouteCreateTags                  = "CreateTags"
	RouteInternalPolicies            = "InternalPolicies"
	RouteInternalPoliciesLastUpdated = "InternalPoliciesLastUpdated"
	RouteInternalSecurityGroups      = "InternalSecurityGroups"
	// RouteInternalSecurityGroupsLastUpdated is newer upstream's (after
	// v3.53.0).
	RouteInternalSecurityGroupsLastUpdated = "InternalSecurityGroupsLastUpdated"
	// RouteInternalPoliciesLastUpdatedLongPoll and
	// RouteInternalSecurityGroupsLastUpdatedLongPoll time long-polls
	// apart, so their deliberate waits do not distort upstream's metrics.
	RouteInternalPoliciesLastUpdatedLongPoll       = "InternalPoliciesLastUpdatedLongPoll"
	RouteInternalSecurityGroupsLastUpdatedLongPoll = "InternalSecurityGroupsLastUpdatedLongPoll"
)

// longPollRoutes maps each version route to the metric name of its
// long-polls.
var longPollRoutes = map[string]string{
	RouteInternalPoliciesLastUpdated:       RouteInternalPoliciesLastUpdatedLongPoll,
	RouteInternalSecurityGroupsLastUpdated: RouteInternalSecurityGroupsLastUpdatedLongPoll,
}

// Long-poll extension of GET .../policies_last_updated and
// .../security_groups_last_updated (netman only).
const (
	// LongPollHeader is set to "1" on every answer of either version route
	// so a client learns from any plain poll that it may long-poll.
	LongPollHeader = "X-Netman-Long-Poll"
	// WaitParam is how long, in seconds (decimal), the client will wait
	// for a change; capped at MaxLongPollWait.
	WaitParam = "wait"
	// SinceParam is the value the client already has.
	SinceParam = "since"
	// IDsParam, on a long-poll of policies_last_updated, names the app
	// and space guids the client fetches policies for (comma-separated,
	// as in the policies query): only a change touching one of them, or
	// a since older than the server's change log, answers before the
	// wait is over. Without it every change answers.
	IDsParam = "id"
	// UnchangedSinceHeader is set (to since) on the answer of a targeted
	// long-poll that ended with no change to its ids: the answer is a
	// later stamp at which the policies of those ids are still what they
	// were at since, so the client may take it as its own without
	// fetching. An answer without it is a change (or could not be judged).
	UnchangedSinceHeader = "X-Netman-Unchanged-Since"
)

// maxTagBody bounds PUT tags bodies; a tag request is under 200 bytes.
const maxTagBody = 1 << 20

// Store is what the API reads and writes policies and tags through.
type Store interface {
	All(ctx context.Context) ([]policy.Policy, error)
	ByGuids(ctx context.Context, srcGuids, destGuids []string, inSourceAndDest bool) ([]policy.Policy, error)
	LastUpdated(ctx context.Context) (int64, error)
	CreateTag(ctx context.Context, id, groupType string) (policy.Tag, error)
}

// SecurityGroupStore pages through the security groups that apply to a set
// of spaces (the global defaults plus those bound to any of spaceGuids) and
// reads their version stamp.
type SecurityGroupStore interface {
	SecurityGroupsBySpaceGuids(ctx context.Context, spaceGuids []string, page store.Page) ([]policy.SecurityGroup, store.Pagination, error)
	SecurityGroupsLastUpdated(ctx context.Context) (int64, error)
}

// API serves the internal routes.
type API struct {
	logger  lager.Logger
	store   Store
	groups  SecurityGroupStore
	watcher *Watcher
	// sgWatcher answers long-polls of security_groups_last_updated
	// (WatchSecurityGroups).
	sgWatcher *Watcher
	errors    errorResponder
	// plainPolls and sgPlainPolls, when set, answer plain polls of the
	// two version routes from a short-lived read (CachePlainPolls).
	plainPolls, sgPlainPolls *plainPollCache
}

// NewAPI builds the handlers; errs counts error responses (`http_error`).
// watcher answers long-polls and must be running (its Run) for them to
// wait; with a nil watcher long-poll parameters are ignored.
func NewAPI(logger lager.Logger, st Store, groups SecurityGroupStore, watcher *Watcher, errs Counter) *API {
	return &API{logger: logger, store: st, groups: groups, watcher: watcher, errors: errorResponder{errors: errs}}
}

// WatchSecurityGroups makes w (reading SecurityGroupsLastUpdated) answer
// long-polls of security_groups_last_updated; like the policies watcher it
// must be running. It returns a for chaining.
func (a *API) WatchSecurityGroups(w *Watcher) *API {
	a.sgWatcher = w
	return a
}

// Routes returns upstream's internal route table.
func (a *API) Routes() []router.Route {
	return []router.Route{
		{Method: http.MethodPut, Path: "/networking/v1/internal/tags", Name: RouteCreateTags, Handler: http.HandlerFunc(a.createTag)},
		{Method: http.MethodGet, Path: "/networking/:version/internal/policies", Name: RouteInternalPolicies, Handler: http.HandlerFunc(a.policies)},
		{Method: http.MethodGet, Path: "/networking/:version/internal/policies_last_updated", Name: RouteInternalPoliciesLastUpdated, Handler: http.HandlerFunc(a.lastUpdated)},
		{Method: http.MethodGet, Path: "/networking/:version/internal/security_groups", Name: RouteInternalSecurityGroups, Handler: http.HandlerFunc(a.securityGroups)},
		{Method: http.MethodGet, Path: "/networking/:version/internal/security_groups_last_updated", Name: RouteInternalSecurityGroupsLastUpdated, Handler: http.HandlerFunc(a.securityGroupsLastUpdated)},
	}
}

// Handler is the internal server's handler: upstream's route table behind
// the router, each route wrapped by wrap (metrics, request logging) and
// then given the HSTS header.
//
// Long-polls of the version routes are wrapped under the names in
// longPollRoutes instead, so that their waits stay out of upstream's
// Internal{Policies,SecurityGroups}LastUpdatedRequestTime.
func (a *API) Handler(wrap func(name string, h http.Handler) http.Handler) http.Handler {
	if wrap == nil {
		wrap = func(_ string, h http.Handler) http.Handler { return h }
	}
	routes := a.Routes()
	for i, r := range routes {
		h := wrap(r.Name, r.Handler)
		if name, ok := longPollRoutes[r.Name]; ok {
			plain, longPoll := h, wrap(name, r.Handler)
			h = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if IsLongPoll(req) {
					longPoll.ServeHTTP(w, req)
					return
				}
				plain.ServeHTTP(w, req)
			})
		}
		routes[i].Handler = HSTS(h)
	}
	return router.Router(routes)
}

// IsLongPoll reports whether r asks a version route to wait.
func IsLongPoll(r *http.Request) bool {
	q := r.URL.Query()
	return q.Has(WaitParam) && q.Has(SinceParam)
}

func (a *API) policies(w http.ResponseWriter, r *http.Request) {
	logger := requestLogger(r, a.logger).Session("index-policies-internal")
	var (
		policies []policy.Policy
		err      error
	)
	// Only the first id= counts; "id=" asks for the id "" (no policies).
	if ids, ok := firstValue(r.URL.Query(), "id"); ok {
		list := strings.Split(ids, ",")
		policies, err = a.store.ByGuids(r.Context(), list, list, false)
	} else {
		policies, err = a.store.All(r.Context())
	}
	if err != nil {
		a.errors.write(w, logger, http.StatusInternalServerError, err, "database read failed")
		return
	}
	buf := getBuffer(48 + len(policies)*200)
	*buf = policy.AppendV1(*buf, policies)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(*buf)
	putBuffer(buf)
}

// Policy answers run to a megabyte for a busy cell, and every agent asks
// right after each policy change; reusing the buffers keeps that burst from
// turning into garbage-collector work.
var bufferPool sync.Pool

// maxPooledBuffer keeps one huge answer (an all-policies dump) from pinning
// its buffer for good.
const maxPooledBuffer = 8 << 20

func getBuffer(size int) *[]byte {
	if b, ok := bufferPool.Get().(*[]byte); ok && cap(*b) >= size {
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, size)
	return &b
}

func putBuffer(b *[]byte) {
	if cap(*b) <= maxPooledBuffer {
		bufferPool.Put(b)
	}
}

func (a *API) lastUpdated(w http.ResponseWriter, r *http.Request) {
	logger := requestLogger(r, a.logger).Session("policies-last-updated-internal")
	a.serveVersion(w, r, logger, a.watcher, a.plainPolls, a.store.LastUpdated, true)
}

// securityGroupsLastUpdated is newer upstream's security_groups_last_updated
// (the security_groups_info stamp), with the same long-poll extension.
func (a *API) securityGroupsLastUpdated(w http.ResponseWriter, r *http.Request) {
	logger := requestLogger(r, a.logger).Session("security-groups-last-updated-internal")
	a.serveVersion(w, r, logger, a.sgWatcher, a.sgPlainPolls, a.groups.SecurityGroupsLastUpdated, false)
}

// serveVersion answers a version route: a long-poll through watcher, else a
// plain read through cache. targets: the long-poll may name its guids
// (IDsParam).
func (a *API) serveVersion(w http.ResponseWriter, r *http.Request, logger lager.Logger, watcher *Watcher, cache *plainPollCache, read func(context.Context) (int64, error), targets bool) {
	q := r.URL.Query()
	wait, since, longPoll, err := parseLongPoll(q)
	if err != nil {
		a.errors.write(w, logger, http.StatusBadRequest, err, err.Error())
		return
	}
	var v int64
	var unchanged bool
	err = errNoAnswer
	if longPoll && wait > 0 && watcher != nil {
		var ids map[string]struct{}
		if list, ok := firstValue(q, IDsParam); ok && targets {
			ids = make(map[string]struct{})
			for _, id := range strings.Split(list, ",") {
				ids[id] = struct{}{}
			}
		}
		var a Answer
		a, err = watcher.WaitFor(r.Context(), since, ids, wait)
		v, unchanged = a.Value, a.Unchanged
	}
	if errors.Is(err, errNoAnswer) {
		v, err = cache.get(r.Context(), read)
	}
	if err != nil && r.Context().Err() != nil {
		return // the client hung up mid-wait: nobody to answer, nothing failed
	}
	if err != nil {
		a.errors.write(w, logger, http.StatusInternalServerError, err, "database read failed")
		return
	}
	w.Header().Set(LongPollHeader, "1")
	if unchanged {
		w.Header().Set(UnchangedSinceHeader, strconv.FormatInt(since, 10))
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(strconv.AppendInt(nil, v, 10))
}

// parseLongPoll reads the long-poll parameters; longPoll is false unless
// both are present. Bad values are the client's error (400), named in the
// same style as the security_groups parameters.
func parseLongPoll(q url.Values) (wait time.Duration, since int64, longPoll bool, err error) {
	waitStr, hasWait := firstValue(q, WaitParam)
	sinceStr, hasSince := firstValue(q, SinceParam)
	if !hasWait && !hasSince {
		return 0, 0, false, nil
	}
	if hasWait {
		secs, perr := strconv.ParseFloat(waitStr, 64)
		if perr != nil || secs < 0 || math.IsNaN(secs) {
			return 0, 0, false, errors.New("invalid value for 'wait' parameter")
		}
		wait = time.Duration(min(secs, MaxLongPollWait.Seconds()) * float64(time.Second))
	}
	if hasSince {
		if since, err = strconv.ParseInt(sinceStr, 10, 64); err != nil {
			return 0, 0, false, errors.New("invalid value for 'since' parameter")
		}
	}
	return wait, since, hasWait && hasSince, nil
}

type tagRequest struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

func (a *API) createTag(w http.ResponseWriter, r *http.Request) {
	logger := requestLogger(r, a.logger).Session("create-tags")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTagBody))
	if err != nil {
		a.errors.write(w, logger, http.StatusBadRequest, err, "failed reading request body")
		return
	}
	var req tagRequest
	if err := json.Unmarshal(body, &req); err != nil {
		a.errors.write(w, logger, http.StatusBadRequest, err, "failed parsing request body")
		return
	}
	tag, err := a.store.CreateTag(r.Context(), req.ID, req.Type)
	if err != nil {
		a.errors.write(w, logger, http.StatusInternalServerError, err, "database create failed")
		return
	}
	if a.watcher != nil {
		a.watcher.Notify()
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(policy.AppendTag(nil, tag))
}

func (a *API) securityGroups(w http.ResponseWriter, r *http.Request) {
	logger := requestLogger(r, a.logger).Session("index-security-group-rules")
	q := r.URL.Query()
	var spaceGuids []string
	if s, ok := firstValue(q, "space_guids"); ok {
		spaceGuids = strings.Split(s, ",")
	}
	// Upstream answers bad integers with 500, and checks from first.
	from, err := intParam(q, "from")
	if err != nil {
		a.errors.write(w, logger, http.StatusInternalServerError, err, "invalid value for 'from' parameter")
		return
	}
	limit, err := intParam(q, "limit")
	if err != nil {
		a.errors.write(w, logger, http.StatusInternalServerError, err, "invalid value for 'limit' parameter")
		return
	}
	groups, page, err := a.groups.SecurityGroupsBySpaceGuids(r.Context(), spaceGuids, store.Page{From: from, Limit: limit})
	if err != nil {
		a.errors.write(w, logger, http.StatusInternalServerError, err, "database read failed")
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(appendSecurityGroups(make([]byte, 0, 64+len(groups)*512), groups, page.Next))
}

func firstValue(q url.Values, key string) (string, bool) {
	if v, ok := q[key]; ok && len(v) > 0 {
		return v[0], true
	}
	return "", false
}

func intParam(q url.Values, key string) (int, error) {
	s, ok := firstValue(q, key)
	if !ok {
		return 0, nil
	}
	return strconv.Atoi(s)
}

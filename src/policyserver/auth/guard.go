package auth

import (
	"context"
	"fmt"
	"slices"

	"github.com/netman-release/netman/src/policy"
)

// ccChunkSize is how many app guids go into one /v3/apps query, as upstream
// (its cc_app_request_chunk_size key is parsed but unused).
const ccChunkSize = 100

// TokenSource supplies the policy server's own client token for CC.
type TokenSource interface {
	GetToken(ctx context.Context) (string, error)
}

// tokenInvalidator is implemented by token sources that cache (UAAClient).
type tokenInvalidator interface{ Invalidate() }

// CloudController is what the guard and the filter ask Cloud Controller.
// *CCClient implements it.
type CloudController interface {
	AppSpaces(ctx context.Context, token string, appGUIDs []string) (map[string]string, error)
	Space(ctx context.Context, token, spaceGUID string) (*Space, error)
	IsSpaceDeveloper(ctx context.Context, token, subject string, space Space) (bool, error)
	SubjectSpaces(ctx context.Context, token, subject string) (map[string]struct{}, error)
}

// Access decides which apps' policies a non-admin may manage and see.
// Admins (network.admin) are always allowed and see everything.
type Access interface {
	// CheckAccess reports whether tok may create (create=true) or delete
	// the policies. An error means the answer could not be found out.
	CheckAccess(ctx context.Context, tok Token, policies []policy.Policy, create bool) (bool, error)
	// FilterPolicies returns the policies tok may see, never nil.
	FilterPolicies(ctx context.Context, tok Token, policies []policy.Policy) ([]policy.Policy, error)
}

// CCAccess is upstream's space-developer rule: a user may manage and see a
// policy only when they are a Space Developer of the spaces of its apps.
type CCAccess struct {
	tokens TokenSource
	cc     CloudController
}

// NewCCAccess returns the Cloud Controller backed Access.
func NewCCAccess(tokens TokenSource, cc CloudController) *CCAccess {
	return &CCAccess{tokens: tokens, cc: cc}
}

// CheckAccess is upstream's policy guard: every space holding an app named
// by the policies must exist (a 404 denies) and the token's subject must be
// a developer there. Unlike upstream, a create naming an app that Cloud
// Controller does not know is denied: upstream let it through, so any
// network.write user could create policies for arbitrary guids and use up
// the tag pool. A delete may still name unknown apps, so users can remove
// policies to apps deleted since.
func (a *CCAccess) CheckAccess(ctx context.Context, tok Token, policies []policy.Policy, create bool) (bool, error) {
	if tok.IsAdmin() {
		return true, nil
	}
	token, err := a.tokens.GetToken(ctx)
	if err != nil {
		return false, fmt.Errorf("getting token: %w", err)
	}
	apps := policy.AppGUIDs(policies)
	appSpaces, err := a.appSpaces(ctx, token, apps)
	if err != nil {
		return false, fmt.Errorf("getting space guids: %w", err)
	}
	if create && len(appSpaces) < len(apps) {
		return false, nil
	}
	var spaces []string
	for _, app := range apps {
		if s, ok := appSpaces[app]; ok && !slices.Contains(spaces, s) {
			spaces = append(spaces, s)
		}
	}
	for _, guid := range spaces {
		space, err := a.cc.Space(ctx, token, guid)
		if err != nil {
			a.invalidateOn(err)
			return false, fmt.Errorf("getting space with guid %s: %w", guid, err)
		}
		if space == nil {
			return false, nil
		}
		ok, err := a.cc.IsSpaceDeveloper(ctx, token, tok.Subject, *space)
		if err != nil {
			a.invalidateOn(err)
			return false, fmt.Errorf("getting space with guid %s: %w", guid, err)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// FilterPolicies is upstream's list filter: a policy is visible when the
// spaces of both its apps are among the subject's spaces; policies naming
// apps CC does not know are hidden.
func (a *CCAccess) FilterPolicies(ctx context.Context, tok Token, policies []policy.Policy) ([]policy.Policy, error) {
	if tok.IsAdmin() {
		return policies, nil
	}
	if len(policies) == 0 {
		return []policy.Policy{}, nil
	}
	token, err := a.tokens.GetToken(ctx)
	if err != nil {
		return nil, fmt.Errorf("getting token: %w", err)
	}
	appSpaces, err := a.appSpaces(ctx, token, policy.AppGUIDs(policies))
	if err != nil {
		return nil, fmt.Errorf("getting app spaces: %w", err)
	}
	subjectSpaces, err := a.cc.SubjectSpaces(ctx, token, tok.Subject)
	if err != nil {
		a.invalidateOn(err)
		return nil, fmt.Errorf("getting subject spaces: %w", err)
	}
	visible := func(app string) bool {
		s, ok := appSpaces[app]
		if !ok {
			return false
		}
		_, ok = subjectSpaces[s]
		return ok
	}
	out := []policy.Policy{}
	for _, p := range policies {
		if visible(p.Source.ID) && visible(p.Destination.ID) {
			out = append(out, p)
		}
	}
	return out, nil
}

// appSpaces asks CC for the spaces of apps, 100 guids per query (upstream
// sent the guard's guids in one query, which CC caps at 5000 per page).
func (a *CCAccess) appSpaces(ctx context.Context, token string, apps []string) (map[string]string, error) {
	out := make(map[string]string, len(apps))
	for chunk := range slices.Chunk(apps, ccChunkSize) {
		m, err := a.cc.AppSpaces(ctx, token, chunk)
		if err != nil {
			a.invalidateOn(err)
			return nil, err
		}
		for app, space := range m {
			out[app] = space
		}
	}
	return out, nil
}

// invalidateOn drops a cached client token that CC refused, so the next
// request fetches a new one instead of failing until the cache expires.
func (a *CCAccess) invalidateOn(err error) {
	if inv, ok := a.tokens.(tokenInvalidator); ok && IsUnauthorized(err) {
		inv.Invalidate()
	}
}

// PolicyLister is the store query the quota needs.
type PolicyLister interface {
	ByGuids(ctx context.Context, srcGuids, destGuids []string, inSourceAndDest bool) ([]policy.Policy, error)
}

// Quota is upstream's per-source quota (max_policies): a non-admin create
// is denied when, for any app named in the request, the policies it is the
// source of already stored plus those the request adds exceed the maximum.
// Duplicates and policies that already exist count, as upstream.
type Quota struct {
	store PolicyLister
	max   int
}

// NewQuota returns the quota guard.
func NewQuota(store PolicyLister, maxPolicies int) *Quota {
	return &Quota{store: store, max: maxPolicies}
}

// CheckQuota reports whether tok may add policies.
func (q *Quota) CheckQuota(ctx context.Context, tok Token, policies []policy.Policy) (bool, error) {
	if tok.IsAdmin() {
		return true, nil
	}
	apps := policy.AppGUIDs(policies)
	existing, err := q.store.ByGuids(ctx, apps, nil, false)
	if err != nil {
		return false, fmt.Errorf("getting policies: %w", err)
	}
	counts := make(map[string]int, len(apps))
	for _, p := range existing {
		counts[p.Source.ID]++
	}
	for _, p := range policies {
		counts[p.Source.ID]++
	}
	for _, app := range apps {
		if counts[app] > q.max {
			return false, nil
		}
	}
	return true, nil
}

package policy

import (
	"net/url"
	"strings"
)

// InternalPolicies is policy-server-internal's policies answer
// (GET /networking/v1/internal/policies) as its clients decode it: v1
// policies with both ends' tags. TotalPolicies is nil when the answer had
// none, which no policies document lacks.
type InternalPolicies struct {
	TotalPolicies *int `json:"total_policies"`
	Policies      []struct {
		Source struct {
			ID  string `json:"id"`
			Tag string `json:"tag"`
		} `json:"source"`
		Destination struct {
			ID       string `json:"id"`
			Tag      string `json:"tag"`
			Protocol string `json:"protocol"`
			Ports    struct {
				Start int `json:"start"`
				End   int `json:"end"`
			} `json:"ports"`
		} `json:"destination"`
	} `json:"policies"`
}

// InternalPoliciesPath is the internal API's path for the policies naming
// any of ids as source or destination; no ids: every policy.
func InternalPoliciesPath(ids ...string) string {
	path := "/networking/v1/internal/policies"
	if len(ids) > 0 {
		path += "?id=" + url.QueryEscape(strings.Join(ids, ","))
	}
	return path
}

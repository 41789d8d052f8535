// Package policy is the domain model shared by the policy server, its
// clients and the policy agent: a policy lets a source app's packets reach
// a destination app on one protocol and port range; tags are the 16-bit
// (tag_length bytes) group ids carried in the VXLAN GBP header.
package policy

import "fmt"

// Policy is one allow rule, in the store's shape: Port is upstream's legacy
// single-port column (the start port when Start == End, else 0).
type Policy struct {
	Source      Source
	Destination Destination
}

// Source is the app whose packets are allowed.
type Source struct {
	ID  string
	Tag string
}

// Destination is the app, protocol and ports that accept them.
type Destination struct {
	ID       string
	Tag      string
	Protocol string // "tcp" or "udp"
	Port     int
	Ports    Ports
}

// Ports is an inclusive port range.
type Ports struct {
	Start int
	End   int
}

// Protocols accepted by the API (case-sensitive, as upstream).
const (
	ProtocolTCP = "tcp"
	ProtocolUDP = "udp"
)

// GroupTypeApp is the group type of every app named in a policy.
const GroupTypeApp = "app"

// Tag is a group's assignment: an app guid (or another caller-chosen id,
// e.g. "INGRESS_ROUTER" of type "router") and its hex tag.
type Tag struct {
	ID   string
	Tag  string
	Type string
}

// FormatTag renders group row id as uppercase hex zero-padded to
// 2×tagLength digits (id 1 → "0001" at tag length 2).
func FormatTag(id, tagLength int) string {
	return fmt.Sprintf("%0*X", 2*tagLength, id)
}

// WithoutTags returns a copy of policies with both tags blanked, as the
// external API always answers.
func WithoutTags(policies []Policy) []Policy {
	out := make([]Policy, len(policies))
	for i, p := range policies {
		p.Source.Tag, p.Destination.Tag = "", ""
		out[i] = p
	}
	return out
}

// SecurityGroup is an application security group as the ASG syncer copies
// it from Cloud Controller and the internal API serves it to cells. Rules is
// the serialized JSON array of rules, kept as a string end to end as
// upstream does.
type SecurityGroup struct {
	GUID              string
	Name              string
	Rules             string
	StagingDefault    bool
	RunningDefault    bool
	StagingSpaceGUIDs []string
	RunningSpaceGUIDs []string
}

// SecurityGroupRule is one element of a SecurityGroup's Rules array, with
// upstream's keys in upstream's order: the ASG syncer writes it so from
// Cloud Controller's rules (missing keys as zero values, as upstream) and
// the agent reads it back.
type SecurityGroupRule struct {
	Protocol    string `json:"protocol"`
	Destination string `json:"destination"`
	Ports       string `json:"ports"`
	Type        int    `json:"type"`
	Code        int    `json:"code"`
	Description string `json:"description"`
	Log         bool   `json:"log"`
}

// AppGUIDs returns the distinct source and destination ids of policies in
// first-seen order, so the Cloud Controller queries made with them are
// deterministic.
func AppGUIDs(ps []Policy) []string {
	seen := make(map[string]struct{}, 2*len(ps))
	out := make([]string, 0, 2*len(ps))
	for _, p := range ps {
		for _, id := range [2]string{p.Source.ID, p.Destination.ID} {
			if _, ok := seen[id]; !ok {
				seen[id] = struct{}{}
				out = append(out, id)
			}
		}
	}
	return out
}

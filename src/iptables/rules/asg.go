package rules

import (
	"net/netip"
	"strings"

	"github.com/netman-release/netman/src/iptables"
)

// ASGChain names the chain vxlan-policy-agent fills with a container's
// security group rules: "asg-" and the first 20 characters of the handle
// after dropping a leading "check-" and every "-", as upstream
// (bfce786c-ab07-40ad-79f9-8f21 → asg-bfce786cab0740ad79f9).
func ASGChain(handle string) string {
	h := strings.ReplaceAll(strings.TrimPrefix(handle, "check-"), "-", "")
	return "asg-" + truncate(h, 20)
}

// ASGCandidateChain is the temporary chain upstream's agent builds next to
// ASGChain and renames over it ("c" + name). netman never creates it, but
// removes one an upstream agent left behind.
func ASGCandidateChain(handle string) string { return "c" + ASGChain(handle) }

// ASGChainPattern matches every chain the agent's ASG sync owns (its
// asg- chains and upstream's casg- candidates), as upstream's cleanup regexp.
const ASGChainPattern = `^c?asg-[A-Za-z0-9]+`

// OverlayAcceptAll accepts everything between overlay addresses: what the
// agent puts first in every chain it creates when
// disable_container_network_policy is set.
func OverlayAcceptAll(overlay netip.Prefix) iptables.Rule {
	p := overlay.Masked().String()
	return iptables.Rule("-s " + p + " -d " + p + " -j ACCEPT")
}

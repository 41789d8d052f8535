package nft

// ContainerChains names the chains cni-wrapper-plugin creates for one
// container, after its iptables chains but with the whole handle (nft
// names may be 256 characters long, so nothing is cut to 28).
type ContainerChains struct {
	Input      string // input--<handle>: container to host
	NetOut     string // netout--<handle>: egress through the underlay
	Overlay    string // overlay--<handle>: traffic to the container
	Masquerade string // masquerade--<handle>: nat postrouting
}

// ChainsFor names a container's chains.
func ChainsFor(handle string) ContainerChains {
	return ContainerChains{
		Input:      "input--" + handle,
		NetOut:     NetOutChain(handle),
		Overlay:    "overlay--" + handle,
		Masquerade: "masquerade--" + handle,
	}
}

// All lists the chains.
func (c ContainerChains) All() []string {
	return []string{c.Input, c.NetOut, c.Overlay, c.Masquerade}
}

// NetOutChain is netout--<handle>, the container's egress chain, which the
// asg sync points at ASGChain when dynamic ASGs are on.
func NetOutChain(handle string) string { return "netout--" + handle }

// ASGChain is asg--<handle>, the agent's security-group chain of a
// container (its sets and log chains are named after it).
func ASGChain(handle string) string { return ASGPrefix + handle }

// ASGPrefix starts every chain and set the asg sync owns.
const ASGPrefix = "asg--"

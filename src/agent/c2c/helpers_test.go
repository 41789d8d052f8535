package c2c

import (
	"fmt"
	"net/netip"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// bigInputs is a cell of n containers, one app each, every app the
// destination of perDst policies (from apps on this cell, round robin).
func bigInputs(n, perDst int) Inputs {
	var in Inputs
	for i := 0; i < n; i++ {
		in.Containers = append(in.Containers, Container{
			Handle: fmt.Sprintf("handle-%04d", i), IP: fmt.Sprintf("10.255.%d.%d", 1+i/250, 2+i%250),
			AppID: fmt.Sprintf("app-%04d", i), SpaceID: "space",
		})
	}
	for i := 0; i < n; i++ {
		for k := 0; k < perDst; k++ {
			src := (i + 1 + k) % n
			in.Policies = append(in.Policies, pol(fmt.Sprintf("app-%04d", src), fmt.Sprintf("%04X", src+1),
				fmt.Sprintf("app-%04d", i), fmt.Sprintf("%04X", i+1), "tcp", 8000+k, 8000+k))
		}
	}
	return in
}

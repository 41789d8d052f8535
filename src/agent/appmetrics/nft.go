package appmetrics

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/google/nftables"

	"github.com/netman-release/netman/src/nft"
)

// The nftables counting objects, in netman's table, named metrics-*
// (no other writer's scope holds that prefix). Each set has a counter per
// element, which the kernel bumps when a rule's lookup matches it: one
// hash lookup per rule whatever the number of containers. metrics-first
// hooks forward before every filter (mangle priority) and sees new
// connections before any verdict; metrics-last hooks forward after every
// filter of every table (priority 100: iptables' filter and security
// tables, and netman's forward chain, run at 0 and 50), so it sees only
// what they let through.
const (
	ChainFirst = "metrics-first"
	ChainLast  = "metrics-last"

	SetIn         = "metrics-in"          // ip daddr: bytes and packets to the container
	SetOut        = "metrics-out"         // ip saddr: from it
	SetInAllowed  = "metrics-in-allowed"  // new connections to it, let through
	SetOutAllowed = "metrics-out-allowed" // new connections from it, let through
	SetInSeen     = "metrics-in-seen"     // new connections to it, before the filters
	SetOutSeen    = "metrics-out-seen"    // new connections from it, before the filters

	priorityLast = 100
)

// nftSets are the counting sets, in the order they are written and read.
var nftSets = []string{SetIn, SetOut, SetInAllowed, SetOutAllowed, SetInSeen, SetOutSeen}

// nftSkeleton is the constant part of every sync: the table, the sets and
// the two chains with their rules (flushed and written again, inside the
// one transaction: the sets' counters are not touched).
func nftSkeleton(b *strings.Builder) {
	t := string(nft.Family) + " " + nft.TableName
	fmt.Fprintf(b, "add table %s\n", t)
	for _, s := range nftSets {
		fmt.Fprintf(b, "add set %s %s { type ipv4_addr ; counter ; }\n", t, s)
	}
	chain := func(name, prio string, rules ...string) {
		fmt.Fprintf(b, "add chain %s %s { type filter hook forward priority %s ; }\n", t, name, prio)
		fmt.Fprintf(b, "flush chain %s %s\n", t, name)
		for _, r := range rules {
			fmt.Fprintf(b, "add rule %s %s %s\n", t, name, r)
		}
	}
	chain(ChainFirst, "mangle",
		"ct state new ip saddr @"+SetOutSeen,
		"ct state new ip daddr @"+SetInSeen)
	chain(ChainLast, fmt.Sprint(priorityLast),
		"ip saddr @"+SetOut,
		"ip daddr @"+SetIn,
		"ct state new ip saddr @"+SetOutAllowed,
		"ct state new ip daddr @"+SetInAllowed)
}

// PlanNFT returns the nft script that takes the counting objects from cur
// (IP → handle counted now) to want: the skeleton, then each set's
// elements of IPs gone or now another container's deleted, and those of
// IPs new or now another container's added (a new element counts from
// zero). Elements that stay are not touched.
func PlanNFT(cur map[string]string, want []Instance) string {
	var b strings.Builder
	nftSkeleton(&b)
	wantIP := make(map[string]string, len(want))
	for _, in := range want {
		wantIP[in.IP] = in.Handle
	}
	var del, add []string
	for ip, h := range cur {
		if wh, ok := wantIP[ip]; !ok || wh != h {
			del = append(del, ip)
		}
	}
	slices.SortFunc(del, compareIP)
	for _, in := range want {
		if h, ok := cur[in.IP]; !ok || h != in.Handle {
			add = append(add, in.IP+" comment "+strconv.Quote(in.Handle))
		}
	}
	slices.SortFunc(add, compareIP)
	t := string(nft.Family) + " " + nft.TableName
	for _, verb := range []struct {
		name string
		ips  []string
	}{{"delete", del}, {"add", add}} {
		if len(verb.ips) == 0 {
			continue
		}
		list := strings.Join(verb.ips, ", ")
		for _, s := range nftSets {
			fmt.Fprintf(&b, "%s element %s %s { %s }\n", verb.name, t, s, list)
		}
	}
	return b.String()
}

func compareIP(a, b string) int {
	a, _, _ = strings.Cut(a, " ")
	b, _, _ = strings.Cut(b, " ")
	x, err1 := netip.ParseAddr(a)
	y, err2 := netip.ParseAddr(b)
	if err1 != nil || err2 != nil {
		return strings.Compare(a, b)
	}
	return x.Compare(y)
}

// RemoveNFT is the nft script that deletes the counting chains and sets
// (an agent whose metrics are off). The table must exist.
func RemoveNFT() string {
	var b strings.Builder
	nftSkeleton(&b)
	t := string(nft.Family) + " " + nft.TableName
	for _, c := range []string{ChainFirst, ChainLast} {
		fmt.Fprintf(&b, "delete chain %s %s\n", t, c)
	}
	for _, s := range nftSets {
		fmt.Fprintf(&b, "delete set %s %s\n", t, s)
	}
	return b.String()
}

// NFT is the DataPlane of the nftables backend. It writes with nft and
// reads the sets' counters over netlink, both in the network namespace of
// the calling thread. Each element's comment is its container's handle,
// so counters read back name their container. It remembers what it wrote;
// after a failed write, or at start, it reads the elements back before
// planning (an agent restarted keeps the counters of the containers still
// there).
type NFT struct {
	mu    sync.Mutex
	mem   map[string]string // IP → handle
	valid bool
}

// Sync implements DataPlane.
func (d *NFT) Sync(ctx context.Context, want []Instance) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.valid {
		owners, err := readOwners()
		if err != nil {
			return err
		}
		d.mem = owners
	}
	script := PlanNFT(d.mem, want)
	if err := runNFT(ctx, script); err != nil {
		d.valid = false
		return err
	}
	d.mem = make(map[string]string, len(want))
	for _, in := range want {
		d.mem[in.IP] = in.Handle
	}
	d.valid = true
	return nil
}

// Read implements DataPlane: one netlink dump of each counting set's
// elements (six dumps, whatever the number of containers).
func (d *NFT) Read(ctx context.Context) (map[string]Counts, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, err
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: nft.TableName}
	out := map[string]Counts{}
	for _, name := range nftSets {
		els, err := conn.GetSetElements(&nftables.Set{Table: table, Name: name})
		if err != nil {
			return nil, fmt.Errorf("reading the elements of %s: %w", name, err)
		}
		for _, e := range els {
			h := e.Comment
			if e.Counter == nil || h == "" {
				continue
			}
			c := out[h]
			p, by := e.Counter.Packets, e.Counter.Bytes
			switch name {
			case SetIn:
				c.InPackets, c.InBytes = p, by
			case SetOut:
				c.OutPackets, c.OutBytes = p, by
			case SetInAllowed:
				c.InAllowed = p
			case SetOutAllowed:
				c.OutAllowed = p
			case SetInSeen:
				c.InSeen = p
			case SetOutSeen:
				c.OutSeen = p
			}
			out[h] = c
		}
	}
	return out, nil
}

// readOwners maps each IP metrics-in counts to its handle (none when the
// set or the table does not exist).
func readOwners() (map[string]string, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, err
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: nft.TableName}
	els, err := conn.GetSetElements(&nftables.Set{Table: table, Name: SetIn})
	if err != nil {
		// ENOENT: no table or no set yet, nothing counted.
		if strings.Contains(err.Error(), "no such file or directory") {
			return nil, nil
		}
		return nil, fmt.Errorf("reading the elements of %s: %w", SetIn, err)
	}
	owners := map[string]string{}
	for _, e := range els {
		if a, ok := netip.AddrFromSlice(e.Key); ok {
			owners[a.Unmap().String()] = e.Comment
		}
	}
	return owners, nil
}

// runNFT runs script as one nft transaction.
func runNFT(ctx context.Context, script string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// RemoveNFTObjects deletes the counting chains and sets from netman's
// table.
func RemoveNFTObjects(ctx context.Context) error { return runNFT(ctx, RemoveNFT()) }

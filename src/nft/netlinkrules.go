package nft

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The rule fast path: the rules cni-wrapper-plugin writes for a container
// (its input, netout, overlay and masquerade chains, and the egress chain
// and log chain of garden's netOut rules) are encoded here as the very
// expressions nft 1.0.6 generates for the same text (nft --debug=netlink),
// so a transaction of chains, rules and elements goes over netlink like an
// element-only one, and `nft list` prints the rules back as written. nft's
// own cost is not only its process: before evaluating a transaction it
// lists the table's chains and sets (70–130 ms at 100 containers). A rule
// this file does not know (the connection-rate meter, a set of deny
// networks, anything the agent writes) sends the whole transaction to nft
// as before; TestRuleEncodingMatchesNFT checks every form on the kernel.

// Registers as nft uses them: the 128-bit register 1 for a single value
// and a concatenation's first field, the 32-bit registers 9 and 10 for its
// next fields.
const (
	reg1  = 1
	reg9  = 9
	reg10 = 10
)

// ct states, as the kernel's bits.
var ctStates = map[string]uint32{"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64}

// encodeRule encodes one rule's canonical text, or reports errNoFastPath.
func encodeRule(text string) ([]expr.Any, error) {
	r := &ruleEncoder{text: text, toks: strings.Fields(text)}
	for r.more() {
		if err := r.statement(); err != nil {
			return nil, err
		}
	}
	if len(r.toks) > 0 {
		return nil, errNoFastPath // something after the verdict (a comment, ...)
	}
	if !r.final {
		// A rule without a verdict or terminal statement, e.g. a bare
		// log: valid, but not one the wrapper writes.
		if len(r.exprs) == 0 || !r.logged {
			return nil, errNoFastPath
		}
	}
	return r.exprs, nil
}

type ruleEncoder struct {
	text   string
	toks   []string
	exprs  []expr.Any
	nfv4   bool // meta nfproto ipv4 emitted
	nfv6   bool // meta nfproto ipv6 emitted
	final  bool // a verdict or terminal statement was encoded
	logged bool
}

func (r *ruleEncoder) more() bool { return len(r.toks) > 0 && !r.final }

func (r *ruleEncoder) next() string {
	if len(r.toks) == 0 {
		return ""
	}
	t := r.toks[0]
	r.toks = r.toks[1:]
	return t
}

func (r *ruleEncoder) peek(n int) string {
	if len(r.toks) <= n {
		return ""
	}
	return r.toks[n]
}

func (r *ruleEncoder) add(e ...expr.Any) { r.exprs = append(r.exprs, e...) }

// ipv4 emits nft's implicit "meta nfproto ipv4" before the rule's first
// IPv4 header match.
func (r *ruleEncoder) ipv4() {
	if !r.nfv4 {
		r.add(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.NFPROTO_IPV4}})
		r.nfv4 = true
	}
}

// ipv6 is ipv4 for IPv6 header matches ("meta nfproto ipv6").
func (r *ruleEncoder) ipv6() {
	if !r.nfv6 {
		r.add(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.NFPROTO_IPV6}})
		r.nfv6 = true
	}
}

// icmpv6Types are the ICMPv6 types the wrapper matches, by the names nft
// lists them with.
var icmpv6Types = map[string]byte{"nd-router-solicit": 133, "nd-neighbor-solicit": 135, "nd-neighbor-advert": 136}

// op consumes an optional "!=".
func (r *ruleEncoder) op() expr.CmpOp {
	if r.peek(0) == "!=" {
		r.next()
		return expr.CmpOpNeq
	}
	return expr.CmpOpEq
}

func (r *ruleEncoder) statement() error {
	switch t := r.next(); t {
	case "ct":
		if r.next() != "state" {
			return errNoFastPath
		}
		var mask uint32
		for _, s := range strings.Split(r.next(), ",") {
			bit, ok := ctStates[s]
			if !ok {
				return errNoFastPath
			}
			mask |= bit
		}
		r.add(&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binary.NativeEndian.AppendUint32(nil, mask), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)})
	case "meta":
		switch r.next() {
		case "l4proto":
			op := r.op()
			p, ok := ProtoNumber(r.next())
			if !ok {
				return errNoFastPath
			}
			r.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
				&expr.Cmp{Op: op, Register: reg1, Data: []byte{p}})
		case "mark":
			op := r.op()
			m, err := strconv.ParseUint(r.next(), 0, 32)
			if err != nil {
				return errNoFastPath
			}
			r.add(&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
				&expr.Cmp{Op: op, Register: reg1, Data: binary.NativeEndian.AppendUint32(nil, uint32(m))})
		default:
			return errNoFastPath
		}
	case "ip":
		field := r.next()
		if field == "daddr" && r.peek(0) == "." {
			return r.lookup()
		}
		var off uint32
		switch field {
		case "saddr":
			off = 12
		case "daddr":
			off = 16
		default:
			return errNoFastPath
		}
		op := r.op()
		p, err := parsePrefix(r.next())
		if err != nil {
			return err
		}
		r.ipv4()
		a := p.Addr().As4()
		switch bits := p.Bits(); {
		case bits == 0:
			return errNoFastPath
		case bits%8 == 0:
			n := uint32(bits / 8)
			r.add(&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
				&expr.Cmp{Op: op, Register: reg1, Data: a[:n]})
		default:
			mask := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-bits))
			r.add(&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
				&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
				&expr.Cmp{Op: op, Register: reg1, Data: a[:]})
		}
	case "ip6":
		field := r.next()
		if field == "daddr" && r.peek(0) == "." {
			return r.lookup6()
		}
		var off uint32
		switch field {
		case "saddr":
			off = 8
		case "daddr":
			off = 24
		default:
			return errNoFastPath
		}
		op := r.op()
		p, err := netip.ParsePrefix(r.peek(0))
		if err != nil {
			a, err := netip.ParseAddr(r.peek(0))
			if err != nil {
				return errNoFastPath
			}
			p = netip.PrefixFrom(a, 128)
		}
		r.next()
		if !p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().Zone() != "" || p != p.Masked() || p.Bits() == 0 || p.Bits()%8 != 0 {
			return errNoFastPath
		}
		r.ipv6()
		a := p.Addr().As16()
		n := uint32(p.Bits() / 8)
		r.add(&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Cmp{Op: op, Register: reg1, Data: a[:n]})
	case "icmpv6":
		if r.next() != "type" {
			return errNoFastPath
		}
		typ, ok := icmpv6Types[r.next()]
		if !ok {
			return errNoFastPath
		}
		r.ipv6()
		r.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_ICMPV6}},
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{typ}})
	case "tcp", "udp":
		p, _ := ProtoNumber(t)
		if r.next() != "dport" {
			return errNoFastPath
		}
		op := r.op()
		port, err := strconv.ParseUint(r.next(), 10, 16)
		if err != nil {
			return errNoFastPath
		}
		r.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{p}},
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: op, Register: reg1, Data: binary.BigEndian.AppendUint16(nil, uint16(port))})
	case "oifname":
		op := r.op()
		name, err := strconv.Unquote(r.next())
		if err != nil || len(name) == 0 || len(name) >= 16 || strings.ContainsAny(name, "*\\\x00") {
			return errNoFastPath
		}
		b := make([]byte, 16)
		copy(b, name)
		r.add(&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1},
			&expr.Cmp{Op: op, Register: reg1, Data: b})
	case "limit":
		return r.limit()
	case "log":
		if r.next() != "prefix" {
			return errNoFastPath
		}
		// The prefix is one quoted token unless it holds spaces: netman's
		// prefixes end with one space, so the closing quote is its own
		// token ("...  ").
		q := r.next()
		for !strings.HasSuffix(q, `"`) || len(q) < 2 {
			if !r.more() {
				return errNoFastPath
			}
			q += " " + r.next()
		}
		prefix, err := strconv.Unquote(q)
		if err != nil || !strings.Contains(r.text, " prefix "+q) { // spaces rejoined as they were
			return errNoFastPath
		}
		r.add(&expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(prefix)})
		r.logged = true
	case "accept":
		r.verdict(&expr.Verdict{Kind: expr.VerdictAccept})
	case "drop":
		r.verdict(&expr.Verdict{Kind: expr.VerdictDrop})
	case "goto", "jump":
		chain := r.next()
		if chain == "" || strings.ContainsAny(chain, "\"") {
			return errNoFastPath
		}
		kind := expr.VerdictJump
		if t == "goto" {
			kind = expr.VerdictGoto
		}
		r.verdict(&expr.Verdict{Kind: kind, Chain: chain})
	case "reject":
		switch {
		case !r.more():
			r.verdict(&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH})
		case strings.Join(r.toks, " ") == "with icmp port-unreachable" && r.nfv4:
			r.toks = nil
			r.verdict(&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3})
		case strings.Join(r.toks, " ") == "with icmpv6 port-unreachable" && r.nfv6:
			r.toks = nil
			r.verdict(&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 4})
		default:
			return errNoFastPath
		}
	case "masquerade":
		r.verdict(&expr.Masq{})
	default:
		return errNoFastPath
	}
	return nil
}

func (r *ruleEncoder) verdict(e expr.Any) {
	r.add(e)
	r.final = true
}

// lookup encodes the egress sets' lookups, after "ip daddr":
// ". meta l4proto . th dport @S", ". icmp type . icmp code @S" and
// ". meta l4proto @S".
func (r *ruleEncoder) lookup() error { return r.lookupIn(lookupIPv4) }

// lookup6 is lookup after "ip6 daddr": the address fills the 128-bit
// register 1, so the next fields go to register 2 (32-bit register 12)
// and 32-bit register 13, as nft allocates them.
func (r *ruleEncoder) lookup6() error { return r.lookupIn(lookupIPv6) }

// lookupFamily is what differs between an ip and an ip6 destination lookup.
type lookupFamily struct {
	v6               bool
	daddrOffset      uint32
	daddrLen         uint32
	protoReg, twoReg uint32 // the registers after the address
	icmp             string // "icmp" or "icmpv6"
	icmpProto        byte
}

var (
	lookupIPv4 = lookupFamily{daddrOffset: 16, daddrLen: 4, protoReg: reg9, twoReg: reg10, icmp: "icmp", icmpProto: unix.IPPROTO_ICMP}
	lookupIPv6 = lookupFamily{v6: true, daddrOffset: 24, daddrLen: 16, protoReg: 2, twoReg: 13, icmp: "icmpv6", icmpProto: unix.IPPROTO_ICMPV6}
)

func (r *ruleEncoder) lookupIn(f lookupFamily) error {
	var rest []string
	for r.more() && !strings.HasPrefix(r.peek(0), "@") {
		rest = append(rest, r.next())
	}
	set := strings.TrimPrefix(r.next(), "@")
	if set == "" || ValidName(set) != nil {
		return errNoFastPath
	}
	family := r.ipv4
	if f.v6 {
		family = r.ipv6
	}
	daddr := &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOffset, Len: f.daddrLen}
	// nft converts the protocol byte in a concatenation as a 2-byte
	// field of length 1 (its byteorder expression, kept as it sends it).
	l4proto := []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: f.protoReg},
		&expr.Byteorder{SourceRegister: f.protoReg, DestRegister: f.protoReg, Op: expr.ByteorderHton, Len: 1, Size: 2}}
	switch strings.Join(rest, " ") {
	case ". meta l4proto . th dport":
		family()
		r.add(daddr)
		r.add(l4proto...)
		r.add(&expr.Payload{DestRegister: f.twoReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
	case ". meta l4proto":
		family()
		r.add(daddr)
		r.add(l4proto...)
	case ". " + f.icmp + " type . " + f.icmp + " code":
		family()
		r.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{f.icmpProto}},
			daddr,
			&expr.Payload{DestRegister: f.protoReg, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Payload{DestRegister: f.twoReg, Base: expr.PayloadBaseTransportHeader, Offset: 1, Len: 1})
	default:
		return errNoFastPath
	}
	r.add(&expr.Lookup{SourceRegister: reg1, SetName: set})
	return nil
}

// limit encodes "limit rate [over] N/second [burst B packets]" (nft's
// default burst is 5 packets).
func (r *ruleEncoder) limit() error {
	if r.next() != "rate" {
		return errNoFastPath
	}
	l := &expr.Limit{Type: expr.LimitTypePkts, Unit: expr.LimitTimeSecond, Burst: 5}
	if r.peek(0) == "over" {
		r.next()
		l.Over = true
	}
	n, ok := strings.CutSuffix(r.next(), "/second")
	rate, err := strconv.ParseUint(n, 10, 32)
	if !ok || err != nil {
		return errNoFastPath
	}
	l.Rate = rate
	if r.peek(0) == "burst" {
		b, err := strconv.ParseUint(r.peek(1), 10, 32)
		if err != nil || r.peek(2) != "packets" {
			return errNoFastPath
		}
		r.toks = r.toks[3:]
		l.Burst = uint32(b)
	}
	r.add(l)
	return nil
}

// parsePrefix parses an IPv4 address or prefix as a rule writes it.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() || p != p.Masked() {
			return netip.Prefix{}, errNoFastPath
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, errNoFastPath
	}
	return netip.PrefixFrom(a, 32), nil
}

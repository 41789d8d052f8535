package iptableslogger

import (
	"bytes"
	"errors"
	"math"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Packet is what one iptables LOG line says about a packet: the "packet"
// object of an output event. Field order, names and types are upstream's.
type Packet struct {
	Direction string `json:"direction"`
	Allowed   bool   `json:"allowed"`
	SrcIP     string `json:"src_ip"`
	DstIP     string `json:"dst_ip"`
	SrcPort   int    `json:"src_port"`
	DstPort   int    `json:"dst_port"`
	Protocol  string `json:"protocol"`
	Mark      string `json:"mark"`
	ICMPType  int    `json:"icmp_type"`
	ICMPCode  int    `json:"icmp_code"`
}

// Directions of a Packet. Ingress packets leave the host through a
// container's veth (its name starts "s-"); everything else is egress.
const (
	Ingress = "ingress"
	Egress  = "egress"
)

// The log prefixes netman's and upstream's LOG rules use: OK_<handle>,
// OK_<tag>_<app guid> (accepted), DENY_<handle>, DENY_C2C_<handle>,
// DENY_ORL_<handle> (denied).
const (
	allowedMarker = "OK_"
	deniedMarker  = "DENY_"
)

var (
	// ErrIrrelevant is returned for a line that no netman LOG rule wrote
	// (it contains neither OK_ nor DENY_).
	ErrIrrelevant = errors.New("not an OK_ or DENY_ line")
	// ErrNoAddresses is returned for a line that looks like one of ours but
	// does not carry the packet's SRC= and DST= addresses.
	ErrNoAddresses = errors.New("no SRC and DST addresses")
)

// Relevant reports whether a kernel log line may come from a netman LOG rule:
// upstream's test, the line contains OK_ or DENY_ anywhere. It lets the
// logger skip every other kernel message without parsing it.
func Relevant(line []byte) bool {
	return bytes.Contains(line, []byte(allowedMarker)) || bytes.Contains(line, []byte(deniedMarker))
}

// Parse reads a kernel log line written by an iptables LOG rule, in any of
// the forms it reaches the logger: a syslog file line ("Nov 23 10:00:00 cell
// kernel: [12345.678] OK_... IN=... OUT=..."), or the message of a
// /dev/kmsg record.
//
// As upstream: the line is split on white space, every KEY=VALUE word is a
// field and the first occurrence of a key wins; allowed means the line
// contains OK_; the direction is ingress when the OUT= interface contains
// "s-"; ports, ICMP type and code that are missing or not numbers are 0.
// Unlike upstream, a line without a valid SRC= and DST= address is refused
// (ErrNoAddresses) rather than logged with empty addresses: it is not a
// packet log line.
//
// Parse is pure and allocates nothing for a well-formed line; the Packet's
// strings share line's memory.
func Parse(line string) (Packet, error) {
	allowed := strings.Contains(line, allowedMarker)
	if !allowed && !strings.Contains(line, deniedMarker) {
		return Packet{}, ErrIrrelevant
	}
	var f fields
	f.scan(line)
	if !f.has(keySRC) || !f.has(keyDST) || !validAddr(f.val[keySRC]) || !validAddr(f.val[keyDST]) {
		return Packet{}, ErrNoAddresses
	}
	p := Packet{
		Direction: Egress,
		Allowed:   allowed,
		SrcIP:     f.val[keySRC],
		DstIP:     f.val[keyDST],
		SrcPort:   number(f.val[keySPT]),
		DstPort:   number(f.val[keyDPT]),
		Protocol:  f.val[keyPROTO],
		Mark:      f.val[keyMARK],
		ICMPType:  number(f.val[keyTYPE]),
		ICMPCode:  number(f.val[keyCODE]),
	}
	if strings.Contains(f.val[keyOUT], "s-") {
		p.Direction = Ingress
	}
	return p, nil
}

// The keys Parse reads.
const (
	keyOUT = iota
	keySRC
	keyDST
	keySPT
	keyDPT
	keyPROTO
	keyMARK
	keyTYPE
	keyCODE
	numKeys
)

type fields struct {
	seen uint16
	val  [numKeys]string
}

func (f *fields) has(k int) bool { return f.seen&(1<<k) != 0 }

func (f *fields) add(word string) {
	eq := strings.IndexByte(word, '=')
	if eq < 0 {
		return
	}
	k := -1
	switch word[:eq] {
	case "OUT":
		k = keyOUT
	case "SRC":
		k = keySRC
	case "DST":
		k = keyDST
	case "SPT":
		k = keySPT
	case "DPT":
		k = keyDPT
	case "PROTO":
		k = keyPROTO
	case "MARK":
		k = keyMARK
	case "TYPE":
		k = keyTYPE
	case "CODE":
		k = keyCODE
	}
	if k < 0 || f.has(k) {
		return
	}
	f.seen |= 1 << k
	f.val[k] = word[eq+1:]
}

// byteClass tells, for every byte, whether it is ASCII white space as
// strings.Fields sees it (classSpace), the start of a multi-byte character
// (classWide), or anything else (0).
var byteClass = func() (t [256]uint8) {
	for _, c := range "\t\n\v\f\r " {
		t[c] = classSpace
	}
	for c := utf8.RuneSelf; c < 256; c++ {
		t[c] = classWide
	}
	return t
}()

const (
	classSpace = 1
	classWide  = 2
)

// scan splits s into words exactly as strings.Fields does (beyond ASCII it
// uses unicode.IsSpace) and adds each. ASCII text, i.e. every kernel line,
// takes the fast loop.
func (f *fields) scan(s string) {
	i := 0
	for i < len(s) {
		for i < len(s) && byteClass[s[i]] == classSpace {
			i++
		}
		start := i
		for i < len(s) && byteClass[s[i]] == 0 {
			i++
		}
		if i < len(s) && byteClass[s[i]] == classWide {
			f.scanWide(s, start)
			return
		}
		if start < i {
			f.add(s[start:i])
		}
	}
}

// scanWide is scan from the word starting at i, for text with multi-byte
// characters.
func (f *fields) scanWide(s string, i int) {
	for i < len(s) {
		for i < len(s) {
			sp, size := spaceAt(s, i)
			if !sp {
				break
			}
			i += size
		}
		start := i
		for i < len(s) {
			sp, size := spaceAt(s, i)
			if sp {
				break
			}
			i += size
		}
		if start < i {
			f.add(s[start:i])
		}
	}
}

func spaceAt(s string, i int) (bool, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return byteClass[c] == classSpace, 1
	}
	r, size := utf8.DecodeRuneInString(s[i:])
	return unicode.IsSpace(r), size
}

// number is upstream's strconv.Atoi with errors read as 0, without the
// allocation of Atoi's error: an optional sign, then only decimal digits,
// within the range of int.
func number(s string) int {
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return 0
	}
	// Accumulate as a negative number: its range includes math.MinInt.
	const cutoff = math.MinInt / 10
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0
		}
		d := int(c - '0')
		if n < cutoff {
			return 0
		}
		n *= 10
		if n < math.MinInt+d {
			return 0
		}
		n -= d
	}
	if !neg {
		if n == math.MinInt {
			return 0
		}
		return -n
	}
	return n
}

func validAddr(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

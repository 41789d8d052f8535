package nft

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
)

// Box6 is a Box whose first field is an IPv6 address range: 128 bits do
// not fit Interval, so the address is kept apart and the other fields (a
// protocol and port, an ICMPv6 type and code) are an ordinary Box.
type Box6 struct {
	Lo, Hi netip.Addr
	Rest   Box
}

// u128 is an IPv6 address as a number.
type u128 struct{ h, l uint64 }

func toU128(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (u u128) addr() netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.h)
	binary.BigEndian.PutUint64(b[8:], u.l)
	return netip.AddrFrom16(b)
}

func (u u128) cmp(v u128) int {
	switch {
	case u.h != v.h:
		if u.h < v.h {
			return -1
		}
		return 1
	case u.l != v.l:
		if u.l < v.l {
			return -1
		}
		return 1
	}
	return 0
}

// next is u+1 and whether it did not overflow.
func (u u128) next() (u128, bool) {
	if u.l == ^uint64(0) {
		if u.h == ^uint64(0) {
			return u128{}, false
		}
		return u128{u.h + 1, 0}, true
	}
	return u128{u.h, u.l + 1}, true
}

func (u u128) prev() u128 {
	if u.l == 0 {
		return u128{u.h - 1, ^uint64(0)}
	}
	return u128{u.h, u.l - 1}
}

// Disjoint6 is Disjoint for boxes with an IPv6 address first: boxes
// covering exactly the union of in, not overlapping, touching address
// ranges joined where the other fields agree. Every box must have the
// same number of other fields (none: address-only boxes).
func Disjoint6(in []Box6) []Box6 {
	var boxes []Box6
	for _, b := range in {
		if b.Lo.IsValid() && b.Hi.IsValid() && toU128(b.Lo).cmp(toU128(b.Hi)) <= 0 && (len(b.Rest) == 0 || !emptyBox(b.Rest)) {
			boxes = append(boxes, b)
		}
	}
	if len(boxes) == 0 {
		return nil
	}
	// Cut the address space at every box edge; "end" is the cut after
	// the last address (ffff:...:ffff + 1).
	type cut struct {
		v   u128
		end bool
	}
	cuts := make([]cut, 0, 2*len(boxes))
	for _, b := range boxes {
		cuts = append(cuts, cut{v: toU128(b.Lo)})
		if n, ok := toU128(b.Hi).next(); ok {
			cuts = append(cuts, cut{v: n})
		} else {
			cuts = append(cuts, cut{end: true})
		}
	}
	slices.SortFunc(cuts, func(a, b cut) int {
		switch {
		case a.end && b.end:
			return 0
		case a.end:
			return 1
		case b.end:
			return -1
		}
		return a.v.cmp(b.v)
	})
	cuts = slices.Compact(cuts)

	var out []Box6
	var runLo, runHi u128
	var runSub []Box
	inRun := false
	flush := func() {
		if !inRun {
			return
		}
		if runSub == nil {
			out = append(out, Box6{Lo: runLo.addr(), Hi: runHi.addr()})
		}
		for _, s := range runSub {
			out = append(out, Box6{Lo: runLo.addr(), Hi: runHi.addr(), Rest: s})
		}
		inRun = false
	}
	var rests []Box
	for i := 0; i+1 < len(cuts); i++ {
		lo := cuts[i].v
		hi := u128{^uint64(0), ^uint64(0)}
		if !cuts[i+1].end {
			hi = cuts[i+1].v.prev()
		}
		rests = rests[:0]
		covered := false
		for _, b := range boxes {
			if toU128(b.Lo).cmp(lo) <= 0 && toU128(b.Hi).cmp(hi) >= 0 {
				covered = true
				if len(b.Rest) > 0 {
					rests = append(rests, b.Rest)
				}
			}
		}
		if !covered {
			flush()
			continue
		}
		var sub []Box // nil: address-only boxes
		if len(rests) > 0 {
			sub = Disjoint(rests)
		}
		if n, ok := runHi.next(); inRun && ok && n == lo && equalBoxes(runSub, sub) && (runSub == nil) == (sub == nil) {
			runHi = hi
			continue
		}
		flush()
		runLo, runHi, runSub, inRun = lo, hi, sub, true
	}
	flush()
	return out
}

// addrRange6 renders an inclusive IPv6 range as nft lists it: one address
// alone, a prefix when the range is exactly one, else "first-last".
func addrRange6(lo, hi netip.Addr) string {
	if lo == hi {
		return lo.String()
	}
	for bits := 0; bits < 128; bits++ {
		p := netip.PrefixFrom(lo, bits)
		if p.Masked().Addr() != lo {
			continue
		}
		if lastAddr(p) == hi {
			return lo.String() + "/" + strconv.Itoa(bits)
		}
	}
	return lo.String() + "-" + hi.String()
}

// lastAddr is the last address of an IPv6 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	u := toU128(p.Masked().Addr())
	bits := p.Bits()
	switch {
	case bits <= 0:
		u = u128{^uint64(0), ^uint64(0)}
	case bits < 64:
		u.h |= ^uint64(0) >> bits
		u.l = ^uint64(0)
	case bits < 128:
		u.l |= ^uint64(0) >> (bits - 64)
	}
	return u.addr()
}

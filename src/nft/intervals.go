package nft

import (
	"slices"
)

// Interval is an inclusive range of one key field: an IPv4 address as a
// number, a port, an ICMP type or code.
type Interval struct{ Lo, Hi uint32 }

// Box is one Interval per field of a concatenated key: the elements an
// interval set holds.
type Box []Interval

// Disjoint returns boxes that cover exactly the union of in and do not
// overlap, which an nft interval set requires of its elements (the kernel
// rejects an element overlapping another in part, and which of two nested
// ones a lookup finds is not defined). Touching or overlapping ranges are
// merged where their other fields agree, so the result is small and the
// same for the same union whatever the input order. Every box of in must
// have the same number of fields; a box with Lo > Hi in any field is empty
// and ignored.
func Disjoint(in []Box) []Box {
	var boxes []Box
	for _, b := range in {
		if !emptyBox(b) {
			boxes = append(boxes, b)
		}
	}
	if len(boxes) == 0 {
		return nil
	}
	return disjoint(boxes, 0)
}

func emptyBox(b Box) bool {
	for _, iv := range b {
		if iv.Lo > iv.Hi {
			return true
		}
	}
	return len(b) == 0
}

// disjoint decomposes boxes along field d and returns boxes of the fields
// from d on: the field's range is cut at
// every box edge, each piece gets the decomposition of the boxes covering
// it in the remaining fields, and neighbouring pieces with the same
// decomposition are joined.
func disjoint(boxes []Box, d int) []Box {
	if d == len(boxes[0])-1 {
		return union(boxes, d)
	}
	cuts := make([]uint64, 0, 2*len(boxes))
	for _, b := range boxes {
		cuts = append(cuts, uint64(b[d].Lo), uint64(b[d].Hi)+1)
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)

	var out []Box
	var run Interval
	var runSub []Box
	inRun := false
	flush := func() {
		if !inRun {
			return
		}
		for _, s := range runSub {
			out = append(out, append(Box{run}, s...))
		}
		inRun = false
	}
	covering := make([]Box, 0, len(boxes))
	for i := 0; i+1 < len(cuts); i++ {
		lo, hi := uint32(cuts[i]), uint32(cuts[i+1]-1)
		covering = covering[:0]
		for _, b := range boxes {
			if b[d].Lo <= lo && b[d].Hi >= hi {
				covering = append(covering, b)
			}
		}
		if len(covering) == 0 {
			flush()
			continue
		}
		sub := disjoint(covering, d+1)
		if inRun && run.Hi+1 == lo && equalBoxes(runSub, sub) {
			run.Hi = hi
			continue
		}
		flush()
		run, runSub, inRun = Interval{lo, hi}, sub, true
	}
	flush()
	return out
}

// union merges the intervals of the last field d of boxes into one-field
// boxes.
func union(boxes []Box, d int) []Box {
	ivs := make([]Interval, len(boxes))
	for i, b := range boxes {
		ivs[i] = b[d]
	}
	slices.SortFunc(ivs, func(a, b Interval) int {
		if a.Lo != b.Lo {
			if a.Lo < b.Lo {
				return -1
			}
			return 1
		}
		return 0
	})
	var out []Box
	cur := ivs[0]
	for _, iv := range ivs[1:] {
		if uint64(iv.Lo) <= uint64(cur.Hi)+1 {
			cur.Hi = max(cur.Hi, iv.Hi)
			continue
		}
		out = append(out, Box{cur})
		cur = iv
	}
	return append(out, Box{cur})
}

func equalBoxes(a, b []Box) bool {
	return slices.EqualFunc(a, b, func(x, y Box) bool { return slices.Equal(x, y) })
}

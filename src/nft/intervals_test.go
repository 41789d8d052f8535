package nft

import (
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDisjointMergesOverlapsAndNeighbours(t *testing.T) {
	got := Disjoint([]Box{
		{{80, 80}}, {{8000, 9000}}, {{8080, 8090}}, {{79, 79}}, {{9001, 9100}}, {{5, 4}}, // 5-4 is empty
	})
	want := []Box{{{79, 80}}, {{8000, 9100}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestDisjointSplitsCrossingBoxes(t *testing.T) {
	// Two address ranges overlapping on 10-19, with different ports.
	got := Disjoint([]Box{
		{{0, 19}, {80, 80}},
		{{10, 29}, {443, 443}},
	})
	want := []Box{
		{{0, 9}, {80, 80}},
		{{10, 19}, {80, 80}},
		{{10, 19}, {443, 443}},
		{{20, 29}, {443, 443}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// A box inside another disappears into it.
	got = Disjoint([]Box{{{0, 100}, {1, 65535}}, {{50, 60}, {80, 80}}})
	if diff := cmp.Diff([]Box{{{0, 100}, {1, 65535}}}, got); diff != "" {
		t.Errorf("nested (-want +got):\n%s", diff)
	}
}

func TestDisjointFullRange(t *testing.T) {
	got := Disjoint([]Box{{{0, 0xffffffff}, {0, 255}, {0, 255}}, {{1, 2}, {8, 8}, {0, 0}}})
	if diff := cmp.Diff([]Box{{{0, 0xffffffff}, {0, 255}, {0, 255}}}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestDisjointProperty checks on random boxes that the result covers
// exactly the points the input covers and that no two result boxes share
// a point, which is what an nft interval set needs.
func TestDisjointProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	iv := func(n uint32) Interval {
		a, b := r.Uint32N(n), r.Uint32N(n)
		if a > b {
			a, b = b, a
		}
		return Interval{a, b}
	}
	in3 := func(b Box, p [3]uint32) bool {
		for i := range b {
			if p[i] < b[i].Lo || p[i] > b[i].Hi {
				return false
			}
		}
		return true
	}
	for round := 0; round < 200; round++ {
		var in []Box
		for range 1 + r.IntN(12) {
			in = append(in, Box{iv(40), iv(6), iv(30)})
		}
		out := Disjoint(in)
		for x := uint32(0); x < 40; x++ {
			for y := uint32(0); y < 6; y++ {
				for z := uint32(0); z < 30; z++ {
					p := [3]uint32{x, y, z}
					want := false
					for _, b := range in {
						want = want || in3(b, p)
					}
					n := 0
					for _, b := range out {
						if in3(b, p) {
							n++
						}
					}
					if (n > 0) != want || n > 1 {
						t.Fatalf("round %d: point %v covered %d times by %v, input covers it: %t (input %v)", round, p, n, out, want, in)
					}
				}
			}
		}
	}
}

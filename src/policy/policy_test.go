package policy

import "testing"

func TestFormatTag(t *testing.T) {
	for _, tt := range []struct {
		id, length int
		want       string
	}{{1, 2, "0001"}, {255, 2, "00FF"}, {65535, 2, "FFFF"}, {1, 1, "01"}, {4096, 3, "001000"}} {
		if got := FormatTag(tt.id, tt.length); got != tt.want {
			t.Errorf("FormatTag(%d, %d) = %q, want %q", tt.id, tt.length, got, tt.want)
		}
	}
}

func TestWithoutTags(t *testing.T) {
	in := []Policy{{Source: Source{ID: "a", Tag: "0001"}, Destination: Destination{ID: "b", Tag: "0002", Protocol: "tcp", Port: 8080, Ports: Ports{8080, 8080}}}}
	out := WithoutTags(in)
	if out[0].Source.Tag != "" || out[0].Destination.Tag != "" || in[0].Source.Tag != "0001" {
		t.Fatalf("WithoutTags = %+v (input %+v)", out, in)
	}
}

func TestAppGUIDs(t *testing.T) {
	ps := []Policy{
		{Source: Source{ID: "b"}, Destination: Destination{ID: "a"}},
		{Source: Source{ID: "a"}, Destination: Destination{ID: "c"}},
		{Source: Source{ID: "c"}, Destination: Destination{ID: "c"}},
	}
	got := AppGUIDs(ps)
	if len(got) != 3 || got[0] != "b" || got[1] != "a" || got[2] != "c" {
		t.Errorf("AppGUIDs = %v, want [b a c] (distinct, first-seen order)", got)
	}
}

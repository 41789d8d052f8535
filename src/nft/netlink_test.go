package nft

import (
	"reflect"
	"testing"
)

func TestBatchElements(t *testing.T) {
	in := "add table inet netman\n" +
		"add element inet netman s { 1 }\nadd element inet netman s { 2 }\n" +
		"delete element inet netman s { 3 }\nadd element inet netman m { 4 : jump c }\nadd element inet netman m { 5 : drop }\n" +
		"flush chain inet netman c\nadd element inet netman s { 6 }\n"
	want := "add table inet netman\n" +
		"add element inet netman s { 1, 2 }\n" +
		"delete element inet netman s { 3 }\nadd element inet netman m { 4 : jump c, 5 : drop }\n" +
		"flush chain inet netman c\nadd element inet netman s { 6 }\n"
	if got := batchElements(in); got != want {
		t.Errorf("batchElements:\n%s\nwant:\n%s", got, want)
	}
}

func TestSegments(t *testing.T) {
	in := "delete element inet netman s { 1 }\n" +
		"add table inet netman\nadd set inet netman s { type ipv4_addr ; }\n" +
		"add element inet netman s { 2 }\nadd element inet netman m { 4 : jump c }\n" +
		"add element inet netman s { 5 comment \"x\" }\nflush chain inet netman c\n"
	segs, n := segments(in)
	want := []segment{
		{ops: []elementOp{{del: true, set: "s", key: "1"}}, text: "delete element inet netman s { 1 }\n"},
		{text: "add table inet netman\nadd set inet netman s { type ipv4_addr ; }\n"},
		{ops: []elementOp{{set: "s", key: "2"}, {set: "m", key: "4", value: "jump c"}},
			text: "add element inet netman s { 2 }\nadd element inet netman m { 4 : jump c }\n"},
		{text: "add element inet netman s { 5 comment \"x\" }\nflush chain inet netman c\n"},
	}
	if n != 3 || !reflect.DeepEqual(segs, want) {
		t.Errorf("segments: %d elements, %+v\nwant 3, %+v", n, segs, want)
	}
}

package nft

import "testing"

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

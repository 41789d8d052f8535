package jsonenc

import (
	"encoding/json"
	"testing"
)

var samples = []string{
	"", "app-guid-1234", `quote " and \ backslash`, "<script>&amp;</script>",
	"\b\f\n\r\t\x00\x1f\x7f", "ünïcödé ✓", "\u2028\u2029", "bad \xff utf8 \xc3", "emoji 🎉 end",
}

func FuzzAppendString(f *testing.F) {
	for _, s := range samples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("AppendString(%q) = %s, want %s", s, got[1:], want)
		}
	})
}

func TestAppendStringAllocatesNothing(t *testing.T) {
	buf := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() {
		for _, s := range samples {
			buf = AppendString(buf[:0], s)
		}
	})
	if allocs != 0 {
		t.Errorf("AppendString allocates %.1f times, want 0", allocs)
	}
}

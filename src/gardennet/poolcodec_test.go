package gardennet

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/testsupport/configtest"
)

// stdEncode is the on-disk form as encoding/json writes it.
func stdEncode(t testing.TB, acquired map[uint32]string) []byte {
	out := poolJSON{AcquiredPorts: map[string][]uint32{}}
	for port, handle := range acquired {
		out.AcquiredPorts[handle] = append(out.AcquiredPorts[handle], port)
	}
	for _, ports := range out.AcquiredPorts {
		slices.Sort(ports)
	}
	return configtest.JSON(t, out)
}

// grouped is a file's content as handle -> sorted distinct ports, handles
// without ports left out: what upstream's reading and rewriting keeps.
func grouped(in map[string][]uint32) map[string][]uint32 {
	out := map[string][]uint32{}
	for handle, ports := range in {
		if len(ports) > 0 {
			ports = slices.Clone(ports)
			slices.Sort(ports)
			out[handle] = slices.Compact(ports)
		}
	}
	return out
}

// stdDecode is encoding/json's reading of the file.
func stdDecode(data []byte) (map[string][]uint32, error) {
	var in poolJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, err
	}
	return grouped(in.AcquiredPorts), nil
}

func (p *Pool) grouped() map[string][]uint32 {
	out := map[string][]uint32{}
	for _, e := range p.entries {
		out[e.handle] = e.ports
	}
	return grouped(out)
}

func TestPoolCodecMatchesEncodingJSON(t *testing.T) {
	handles := []string{"a", "b", "container-1", "Z", "with space", `quo"te`, `back\slash`, "<html>&", "ünï", "tab\t", "\u2028"}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 50 {
		acquired := map[uint32]string{}
		for range n * 3 {
			acquired[61000+uint32(rng.IntN(5000))] = handles[rng.IntN(len(handles))]
		}
		p := NewPool(acquired)
		got := appendPool(nil, p)
		if want := stdEncode(t, acquired); string(got) != string(want) {
			t.Fatalf("encode\n got %s\nwant %s", got, want)
		}
		var back Pool
		if err := back.UnmarshalJSON(got); err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(back.Acquired(), acquired) {
			t.Fatalf("round trip of %s: %v", got, back.Acquired())
		}
	}
}

func TestPoolDecode(t *testing.T) {
	for _, in := range []string{
		`{}`, ` { } `, `{"acquired_ports":{}}`, `{"acquired_ports":null}`,
		"{\n  \"acquired_ports\": {\n    \"h1\": [ 61000 , 61001 ],\n    \"h2\": []\n  }\n}\n",
		`{"acquired_ports":{"h\u0031":[1]}}`, `{"acquired_ports":{"h":[1]},"other":true}`,
		`{"other":1,"acquired_ports":{"h":[2]}}`, `{"ACQUIRED_PORTS":{"h":[3]}}`,
		`{"acquired_ports":{"h":[4294967295]}}`, `{"acquired_ports":{"b":[1],"a":[2]}}`,
		`{"acquired_ports":{"a":[1],"b":[2],"a":[3]}}`, `{"acquired_ports":{"a":[2,1,2],"e":[]}}`,
		`{"acquired_ports":{"a":[1],"b":[1]}}`,
		// Rejected by both.
		`{"acquired_ports":{"h":[4294967296]}}`, `{"acquired_ports":{"h":[-1]}}`, `{"acquired_ports":{"h":[01]}}`,
		`{"acquired_ports":{"h":[1.5]}}`, `{"acquired_ports":{"h":[1e3]}}`, `{"acquired_ports":{"h":[1,]}}`,
		`{"acquired_ports":{"h":[1]}`, `{"acquired_ports":{"h":[1]}} x`, `[]`, `{"acquired_ports":[]}`,
	} {
		want, wantErr := stdDecode([]byte(in))
		var p Pool
		err := decodePool([]byte(in), &p)
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%s: error %v, encoding/json %v", in, err, wantErr)
			continue
		}
		if err == nil && !cmp.Equal(want, p.grouped()) {
			t.Errorf("%s: got %v, want %v", in, p.grouped(), want)
		}
	}
}

func FuzzPoolDecode(f *testing.F) {
	for _, s := range []string{`{"acquired_ports":{"a":[61000,61003],"b":[61001]}}`, `{}`, `{"acquired_ports":{"a":[1 ,2]} }`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wantErr := stdDecode(data)
		var p Pool
		err := decodePool(data, &p)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%q: error %v, encoding/json %v", data, err, wantErr)
		}
		if err == nil && !cmp.Equal(want, p.grouped()) {
			t.Fatalf("%q: got %v, want %v", data, p.grouped(), want)
		}
	})
}

func BenchmarkPoolCodec(b *testing.B) {
	acquired := map[uint32]string{}
	for i := range uint32(4000) {
		acquired[61000+i] = fmt.Sprintf("container-handle-%08d", i/2)
	}
	p := NewPool(acquired)
	data := appendPool(nil, p)
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			var q Pool
			if err := decodePool(data, &q); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		buf := make([]byte, 0, len(data))
		for i := 0; i < b.N; i++ {
			buf = appendPool(buf[:0], p)
		}
	})
}

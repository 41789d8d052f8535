package daemon

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func attr(typ uint16, v []byte) []byte {
	b := make([]byte, 4, 4+len(v)+3)
	binary.NativeEndian.PutUint16(b[0:2], uint16(4+len(v)))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestEachAttr(t *testing.T) {
	run := append(append(attr(1, []byte{10, 255, 1, 0}), attr(2|0x8000, []byte{0xee, 0xee, 1, 2, 3, 4})...), attr(5, nil)...)
	var types []uint16
	var values [][]byte
	if err := eachAttr(run, func(typ uint16, v []byte) {
		types = append(types, typ)
		values = append(values, v)
	}); err != nil {
		t.Fatal(err)
	}
	if len(types) != 3 || types[0] != 1 || types[1] != 2 || types[2] != 5 {
		t.Fatalf("types %v (the nested flag must be masked off)", types)
	}
	if !bytes.Equal(values[1], []byte{0xee, 0xee, 1, 2, 3, 4}) || len(values[2]) != 0 {
		t.Fatalf("values %v (padding must not leak into a value)", values)
	}

	bad := attr(1, []byte{1, 2, 3, 4})
	binary.NativeEndian.PutUint16(bad[0:2], 200)
	if err := eachAttr(bad, func(uint16, []byte) {}); !errors.Is(err, errBadAttr) {
		t.Errorf("length past the end: %v", err)
	}
	binary.NativeEndian.PutUint16(bad[0:2], 2)
	if err := eachAttr(bad, func(uint16, []byte) {}); !errors.Is(err, errBadAttr) {
		t.Errorf("length below the header: %v", err)
	}
}

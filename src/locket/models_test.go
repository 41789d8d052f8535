package locket

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestWireFormat pins the encoding to locket.proto's field numbers and
// wire types with bytes worked out by hand from the proto3 encoding rules.
func TestWireFormat(t *testing.T) {
	res := &Resource{Key: "k", Owner: "o", Type: "lock", TypeCode: Lock}
	resBytes := []byte{0x0a, 0x01, 'k', 0x12, 0x01, 'o', 0x22, 0x04, 'l', 'o', 'c', 'k', 0x28, 0x01}
	for _, tc := range []struct {
		name  string
		msg   message
		empty message
		want  []byte
	}{
		{"LockRequest", &LockRequest{Resource: res, TTLInSeconds: 15}, &LockRequest{}, append(append([]byte{0x0a, 14}, resBytes...), 0x10, 0x0f)},
		{"ReleaseRequest", &ReleaseRequest{Resource: res}, &ReleaseRequest{}, append([]byte{0x0a, 14}, resBytes...)},
		{"FetchRequest", &FetchRequest{Key: "k"}, &FetchRequest{}, []byte{0x0a, 0x01, 'k'}},
		{"FetchResponse", &FetchResponse{Resource: res}, &FetchResponse{}, append([]byte{0x0a, 14}, resBytes...)},
		{"LockResponse", &LockResponse{}, &LockResponse{}, nil},
	} {
		got, err := codec{}.Marshal(tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, tc.want) {
			t.Errorf("%s: % x, want % x", tc.name, got, tc.want)
		}
		// Unknown fields (here 15, varint) are skipped, as proto3 does.
		if err := (codec{}).Unmarshal(append(got, 0x78, 0x01), tc.empty); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if diff := cmp.Diff(tc.msg, tc.empty); diff != "" {
			t.Errorf("%s round trip (-want +got):\n%s", tc.name, diff)
		}
	}
	if err := (codec{}).Unmarshal([]byte{0x0a, 0x05, 'k'}, &FetchRequest{}); err == nil {
		t.Error("a truncated message decoded")
	}
	if _, err := (codec{}).Marshal("not a message"); err == nil {
		t.Error("marshalled a string")
	}
}

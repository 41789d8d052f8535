// Package locket speaks Diego's locket protocol (gRPC service
// models.Locket) without its generated code: the few messages the lock
// runner needs are encoded by hand with protowire, byte-compatible with
// locket.proto, and carried by a gRPC codec registered only on these calls.
// It provides the client lock runner upstream daemons use (key, owner, TTL,
// retry interval) and a small in-memory locket server for labs and tests.
package locket

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// TypeCode is locket's models.TypeCode.
type TypeCode int32

// Type codes, as locket.proto.
const (
	Unknown  TypeCode = 0
	Lock     TypeCode = 1
	Presence TypeCode = 2
)

// LockType is the legacy string type of a lock resource.
const LockType = "lock"

// Resource is models.Resource.
type Resource struct {
	Key      string
	Owner    string
	Value    string
	Type     string
	TypeCode TypeCode
}

// LockRequest is models.LockRequest.
type LockRequest struct {
	Resource     *Resource
	TTLInSeconds int64
}

// LockResponse is models.LockResponse (empty).
type LockResponse struct{}

// ReleaseRequest is models.ReleaseRequest.
type ReleaseRequest struct{ Resource *Resource }

// ReleaseResponse is models.ReleaseResponse (empty).
type ReleaseResponse struct{}

// FetchRequest is models.FetchRequest.
type FetchRequest struct{ Key string }

// FetchResponse is models.FetchResponse.
type FetchResponse struct{ Resource *Resource }

// message is what the codec carries.
type message interface {
	appendWire(b []byte) []byte
	readWire(b []byte) error
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b // proto3: default values are not written
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendMessage(b []byte, num protowire.Number, m message) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m.appendWire(nil))
}

// fields calls fn for each field of a wire message; fn gets the varint
// value or the bytes, by wire type. Unknown fields are skipped, as proto3.
func fields(b []byte, fn func(num protowire.Number, v uint64, data []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("locket message: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var v uint64
		var data []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			data, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("locket message field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, v, data); err != nil {
			return err
		}
	}
	return nil
}

func (r *Resource) appendWire(b []byte) []byte {
	b = appendString(b, 1, r.Key)
	b = appendString(b, 2, r.Owner)
	b = appendString(b, 3, r.Value)
	b = appendString(b, 4, r.Type)
	return appendVarint(b, 5, uint64(r.TypeCode))
}

func (r *Resource) readWire(b []byte) error {
	*r = Resource{}
	return fields(b, func(num protowire.Number, v uint64, data []byte) error {
		switch num {
		case 1:
			r.Key = string(data)
		case 2:
			r.Owner = string(data)
		case 3:
			r.Value = string(data)
		case 4:
			r.Type = string(data)
		case 5:
			r.TypeCode = TypeCode(int32(v))
		}
		return nil
	})
}

func readResource(data []byte) (*Resource, error) {
	r := &Resource{}
	return r, r.readWire(data)
}

func (m *LockRequest) appendWire(b []byte) []byte {
	if m.Resource != nil {
		b = appendMessage(b, 1, m.Resource)
	}
	return appendVarint(b, 2, uint64(m.TTLInSeconds))
}

func (m *LockRequest) readWire(b []byte) error {
	*m = LockRequest{}
	return fields(b, func(num protowire.Number, v uint64, data []byte) (err error) {
		switch num {
		case 1:
			m.Resource, err = readResource(data)
		case 2:
			m.TTLInSeconds = int64(v)
		}
		return err
	})
}

func (m *ReleaseRequest) appendWire(b []byte) []byte {
	if m.Resource != nil {
		b = appendMessage(b, 1, m.Resource)
	}
	return b
}

func (m *ReleaseRequest) readWire(b []byte) error {
	*m = ReleaseRequest{}
	return fields(b, func(num protowire.Number, _ uint64, data []byte) (err error) {
		if num == 1 {
			m.Resource, err = readResource(data)
		}
		return err
	})
}

func (m *FetchRequest) appendWire(b []byte) []byte { return appendString(b, 1, m.Key) }

func (m *FetchRequest) readWire(b []byte) error {
	*m = FetchRequest{}
	return fields(b, func(num protowire.Number, _ uint64, data []byte) error {
		if num == 1 {
			m.Key = string(data)
		}
		return nil
	})
}

func (m *FetchResponse) appendWire(b []byte) []byte {
	if m.Resource != nil {
		b = appendMessage(b, 1, m.Resource)
	}
	return b
}

func (m *FetchResponse) readWire(b []byte) error {
	*m = FetchResponse{}
	return fields(b, func(num protowire.Number, _ uint64, data []byte) (err error) {
		if num == 1 {
			m.Resource, err = readResource(data)
		}
		return err
	})
}

func (*LockResponse) appendWire(b []byte) []byte    { return b }
func (*LockResponse) readWire([]byte) error         { return nil }
func (*ReleaseResponse) appendWire(b []byte) []byte { return b }
func (*ReleaseResponse) readWire([]byte) error      { return nil }

// codec is gRPC's "proto" codec for the messages above; it is forced on
// each call and on the server, never registered globally.
type codec struct{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) ([]byte, error) {
	m, ok := v.(message)
	if !ok {
		return nil, fmt.Errorf("locket codec: cannot marshal %T", v)
	}
	return m.appendWire(nil), nil
}

func (codec) Unmarshal(data []byte, v any) error {
	m, ok := v.(message)
	if !ok {
		return fmt.Errorf("locket codec: cannot unmarshal into %T", v)
	}
	return m.readWire(data)
}

var errNoResource = errors.New("request has no resource")

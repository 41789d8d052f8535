package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/netman-release/netman/src/jsonenc"
)

// MaxPort is the highest TCP/UDP port.
const MaxPort = 65535

// Errors of the request mappers. Every mapper error wraps exactly one of
// them: the API answers both with 400 and the message
// "mapper: " + err.Error().
var (
	// ErrUnmarshal: the body is not the expected JSON. Message
	// "unmarshal json: <decoder error>".
	ErrUnmarshal = errors.New("unmarshal json")
	// ErrValidate: the JSON decoded but a policy is invalid. Message
	// "validate policies: <reason>", reasons as upstream.
	ErrValidate = errors.New("validate policies")
)

// MapV1 decodes and validates a v1 request body ({"policies":[...]} with
// "ports":{"start","end"}) into store-shaped policies. Decoding follows
// encoding/json (keys matched case-insensitively, unknown keys ignored);
// validation runs upstream's checks in upstream's order, first failure wins.
func MapV1(body []byte) ([]storePolicy, error) {
	// Local types: decoder errors name the struct type ("Go struct field
	// Ports.policies.destination.ports.start"), so the names are upstream's.
	type IPRange struct {
		Start string `json:"start"`
		End   string `json:"end"`
	}
	type Ports struct {
		Start int `json:"start"`
		End   int `json:"end"`
	}
	type Source struct {
		ID   string `json:"id"`
		Tag  string `json:"tag"`
		Type string `json:"type"`
	}
	// Type and IPs are accepted and ignored, as upstream (a leftover of
	// dynamic egress); they are still type-checked by the decoder.
	type Destination struct {
		ID       string    `json:"id"`
		Tag      string    `json:"tag"`
		Protocol string    `json:"protocol"`
		Ports    Ports     `json:"ports"`
		Type     string    `json:"type"`
		IPs      []IPRange `json:"ips"`
	}
	type Policy struct {
		Source      Source      `json:"source"`
		Destination Destination `json:"destination"`
	}
	type PoliciesPayload struct {
		Policies []Policy `json:"policies"`
	}

	var payload PoliciesPayload
	return mapEach(body, &payload, &payload.Policies, func(p Policy) (storePolicy, error) {
		d := p.Destination
		var ports error
		switch {
		case d.Ports.Start > d.Ports.End:
			ports = invalid("invalid port range %d-%d, start must be less than or equal to end", d.Ports.Start, d.Ports.End)
		case d.Ports.Start < 0:
			ports = invalid("invalid start port %d, must be in range 1-65535", d.Ports.Start)
		case d.Ports.Start == 0:
			ports = invalid("missing start port")
		case d.Ports.End > MaxPort:
			ports = invalid("invalid end port %d, must be in range 1-65535", d.Ports.End)
		}
		return NewPolicy(p.Source.ID, d.ID, d.Protocol, d.Ports.Start, d.Ports.End),
			validate(p.Source.ID, d.ID, d.Protocol, ports, p.Source.Tag, d.Tag)
	})
}

// MapV0 decodes and validates a v0 request body ("port": N) as MapV1 does.
// Unlike upstream, a port above 65535 is rejected (upstream stored it, and
// no policy agent can render such a rule).
func MapV0(body []byte) ([]storePolicy, error) {
	type Source struct {
		ID  string `json:"id"`
		Tag string `json:"tag"`
	}
	type Destination struct {
		ID       string `json:"id"`
		Tag      string `json:"tag"`
		Protocol string `json:"protocol"`
		Port     int    `json:"port"`
	}
	type Policy struct {
		Source      Source      `json:"source"`
		Destination Destination `json:"destination"`
	}
	type Policies struct {
		Policies []Policy `json:"policies"`
	}

	var payload Policies
	return mapEach(body, &payload, &payload.Policies, func(p Policy) (storePolicy, error) {
		d := p.Destination
		var port error
		switch {
		case d.Port < 0 || d.Port > MaxPort:
			port = invalid("invalid port %d, must be in range 1-65535", d.Port)
		case d.Port == 0:
			port = invalid("missing port")
		}
		return NewPolicy(p.Source.ID, d.ID, d.Protocol, d.Port, d.Port),
			validate(p.Source.ID, d.ID, d.Protocol, port, p.Source.Tag, d.Tag)
	})
}

// storePolicy names Policy inside the mappers, whose local wire types
// shadow it.
type storePolicy = Policy

// mapEach decodes body into payload (whose policies are *list) and maps
// every policy with each, in order; the first failure wins. The payload
// types are the caller's: the decoder's errors name them, as upstream's.
func mapEach[P any](body []byte, payload any, list *[]P, each func(P) (storePolicy, error)) ([]storePolicy, error) {
	if err := json.Unmarshal(body, payload); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnmarshal, err)
	}
	if len(*list) == 0 {
		return nil, invalid("missing policies")
	}
	out := make([]storePolicy, len(*list))
	for i, p := range *list {
		var err error
		if out[i], err = each(p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// validate runs upstream's checks of one policy in upstream's order: ids,
// protocol, then the port check's result, then tags.
func validate(sourceID, destID, protocol string, ports error, sourceTag, destTag string) error {
	switch {
	case sourceID == "":
		return invalid("missing source id")
	case destID == "":
		return invalid("missing destination id")
	case protocol != ProtocolTCP && protocol != ProtocolUDP:
		return invalid("invalid destination protocol, specify either udp or tcp")
	case ports != nil:
		return ports
	case sourceTag != "" || destTag != "":
		return invalid("tags may not be specified")
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrValidate, fmt.Sprintf(format, args...))
}

// NewPolicy builds a store-shaped policy without tags: Port is the start
// port when the range is a single port, else 0, as upstream stores it.
func NewPolicy(sourceID, destID, protocol string, start, end int) Policy {
	port := 0
	if start == end {
		port = start
	}
	return Policy{
		Source:      Source{ID: sourceID},
		Destination: Destination{ID: destID, Protocol: protocol, Port: port, Ports: Ports{Start: start, End: end}},
	}
}

// MarshalV1 encodes policies as upstream's v1 collection,
// {"total_policies":N,"policies":[...]} with "ports":{"start","end"}. Tags
// are emitted when set (the internal API); the external API passes
// WithoutTags. The bytes are what encoding/json would produce.
func MarshalV1(policies []Policy) []byte {
	return AppendV1(make([]byte, 0, 48+len(policies)*200), policies)
}

// AppendV1 is MarshalV1 appending to buf.
func AppendV1(buf []byte, policies []Policy) []byte {
	buf = append(buf, `{"total_policies":`...)
	buf = strconv.AppendInt(buf, int64(len(policies)), 10)
	buf = append(buf, `,"policies":`...)
	buf = AppendV1List(buf, policies)
	return append(buf, '}')
}

// AppendV1List appends just the JSON array of v1 policy objects, e.g. for
// logging policies as json.RawMessage.
func AppendV1List(buf []byte, policies []Policy) []byte {
	buf = append(buf, '[')
	for i, p := range policies {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendEnds(buf, p)
		buf = append(buf, `,"ports":{"start":`...)
		buf = strconv.AppendInt(buf, int64(p.Destination.Ports.Start), 10)
		buf = append(buf, `,"end":`...)
		buf = strconv.AppendInt(buf, int64(p.Destination.Ports.End), 10)
		buf = append(buf, "}}}"...)
	}
	return append(buf, ']')
}

// MarshalV0 encodes policies as upstream's v0 collection with a single
// "port". Port-range policies cannot be expressed in v0 and are dropped
// (and not counted in total_policies), as upstream.
func MarshalV0(policies []Policy) []byte {
	n := 0
	for _, p := range policies {
		if p.Destination.Ports.Start == p.Destination.Ports.End {
			n++
		}
	}
	buf := make([]byte, 0, 48+n*150)
	buf = append(buf, `{"total_policies":`...)
	buf = strconv.AppendInt(buf, int64(n), 10)
	buf = append(buf, `,"policies":[`...)
	first := true
	for _, p := range policies {
		if p.Destination.Ports.Start != p.Destination.Ports.End {
			continue
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = appendEnds(buf, p)
		buf = append(buf, `,"port":`...)
		buf = strconv.AppendInt(buf, int64(p.Destination.Ports.Start), 10)
		buf = append(buf, "}}"...)
	}
	return append(buf, "]}"...)
}

// appendEnds writes {"source":{...},"destination":{"id":..[,"tag":..],"protocol":..
// leaving the destination object open for the port fields.
func appendEnds(buf []byte, p Policy) []byte {
	buf = append(buf, `{"source":{"id":`...)
	buf = jsonenc.AppendString(buf, p.Source.ID)
	if p.Source.Tag != "" {
		buf = append(buf, `,"tag":`...)
		buf = jsonenc.AppendString(buf, p.Source.Tag)
	}
	buf = append(buf, `},"destination":{"id":`...)
	buf = jsonenc.AppendString(buf, p.Destination.ID)
	if p.Destination.Tag != "" {
		buf = append(buf, `,"tag":`...)
		buf = jsonenc.AppendString(buf, p.Destination.Tag)
	}
	buf = append(buf, `,"protocol":`...)
	return jsonenc.AppendString(buf, p.Destination.Protocol)
}

// MarshalTags encodes upstream's tags index, {"tags":[{"id","tag","type"}]}.
func MarshalTags(tags []Tag) []byte {
	buf := make([]byte, 0, 16+len(tags)*80)
	buf = append(buf, `{"tags":[`...)
	for i, t := range tags {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = AppendTag(buf, t)
	}
	return append(buf, "]}"...)
}

// AppendTag appends one tag object, {"id":..,"tag":..,"type":..}.
func AppendTag(buf []byte, t Tag) []byte {
	buf = append(buf, `{"id":`...)
	buf = jsonenc.AppendString(buf, t.ID)
	buf = append(buf, `,"tag":`...)
	buf = jsonenc.AppendString(buf, t.Tag)
	buf = append(buf, `,"type":`...)
	buf = jsonenc.AppendString(buf, t.Type)
	return append(buf, '}')
}

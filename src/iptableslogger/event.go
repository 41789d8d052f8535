package iptableslogger

import (
	"strconv"
	"time"

	"github.com/netman-release/netman/src/jsonenc"
)

// Container is the app behind a packet's container address: the "source"
// (egress) or "destination" (ingress) object of an output event. Field
// order, names and types are upstream's.
type Container struct {
	ContainerID      string `json:"container_id"`
	AppGUID          string `json:"app_guid"`
	SpaceGUID        string `json:"space_guid"`
	OrganizationGUID string `json:"organization_guid"`
	HostIP           string `json:"host_ip"`
	HostGUID         string `json:"host_guid"`
}

// TimestampFormat selects one of lager's two line shapes for the output.
type TimestampFormat int

const (
	// TimestampDeprecated is lager's original shape:
	// {"timestamp":"<unix seconds>.<9 digits>","source":…,"message":…,"log_level":1,"data":…}.
	TimestampDeprecated TimestampFormat = iota
	// TimestampRFC3339 is lager's "pretty" shape:
	// {"timestamp":"<RFC 3339, UTC, 9 digits>","level":"info","source":…,"message":…,"data":…}.
	TimestampRFC3339
)

// Source is the lager source of every output line; messages are
// Source + "." + <direction>-<allowed|denied>.
const Source = "cfnetworking.iptables"

// Message is the lager message of the event for p, e.g.
// "cfnetworking.iptables.ingress-allowed".
func Message(p Packet) string {
	if p.Allowed {
		return Source + "." + p.Direction + "-allowed"
	}
	return Source + "." + p.Direction + "-denied"
}

// AppendEvent appends one output line (with its newline) for a packet and
// the container it was matched to, logged at t. The bytes are exactly what
// upstream's lager sink writes for the same event — keys in lager's order,
// data keys sorted, strings escaped as encoding/json does — without
// reflection or allocation.
func AppendEvent(dst []byte, t time.Time, format TimestampFormat, p Packet, c Container) []byte {
	dst = appendLineStart(dst, t, format)
	dst = appendMessage(dst, p)
	dst = appendDataStart(dst, format)
	if p.Direction == Ingress {
		dst = append(dst, `"destination":`...)
		dst = appendContainer(dst, c)
		dst = append(dst, `,"packet":`...)
		dst = appendPacket(dst, p)
	} else {
		dst = append(dst, `"packet":`...)
		dst = appendPacket(dst, p)
		dst = append(dst, `,"source":`...)
		dst = appendContainer(dst, c)
	}
	return append(dst, "}}\n"...)
}

// appendLineStart appends a lager line up to its message: the timestamp,
// the level in the RFC 3339 shape, and the source.
func appendLineStart(dst []byte, t time.Time, format TimestampFormat) []byte {
	dst = append(dst, `{"timestamp":"`...)
	if format == TimestampRFC3339 {
		dst = appendRFC3339(dst, t.UTC())
		dst = append(dst, `","level":"info","source":"`...)
	} else {
		// lager's fmt.Sprintf("%.9f", float64(t.UnixNano())/1e9), precision
		// loss included.
		dst = strconv.AppendFloat(dst, float64(t.UnixNano())/1e9, 'f', 9, 64)
		dst = append(dst, `","source":"`...)
	}
	dst = append(dst, Source...)
	return append(dst, `","message":`...)
}

// appendDataStart appends what comes between the message and the data's
// first key: the level in the deprecated shape, and the data's brace.
func appendDataStart(dst []byte, format TimestampFormat) []byte {
	if format != TimestampRFC3339 {
		dst = append(dst, `,"log_level":1`...)
	}
	return append(dst, `,"data":{`...)
}

func appendMessage(dst []byte, p Packet) []byte {
	dst = append(dst, '"')
	dst = append(dst, Source+"."...)
	dst = jsonenc.AppendStringBody(dst, p.Direction)
	if p.Allowed {
		dst = append(dst, "-allowed"...)
	} else {
		dst = append(dst, "-denied"...)
	}
	return append(dst, '"')
}

func appendPacket(dst []byte, p Packet) []byte {
	dst = append(dst, `{"direction":`...)
	dst = jsonenc.AppendString(dst, p.Direction)
	dst = append(dst, `,"allowed":`...)
	dst = strconv.AppendBool(dst, p.Allowed)
	dst = append(dst, `,"src_ip":`...)
	dst = jsonenc.AppendString(dst, p.SrcIP)
	dst = append(dst, `,"dst_ip":`...)
	dst = jsonenc.AppendString(dst, p.DstIP)
	dst = append(dst, `,"src_port":`...)
	dst = strconv.AppendInt(dst, int64(p.SrcPort), 10)
	dst = append(dst, `,"dst_port":`...)
	dst = strconv.AppendInt(dst, int64(p.DstPort), 10)
	dst = append(dst, `,"protocol":`...)
	dst = jsonenc.AppendString(dst, p.Protocol)
	dst = append(dst, `,"mark":`...)
	dst = jsonenc.AppendString(dst, p.Mark)
	dst = append(dst, `,"icmp_type":`...)
	dst = strconv.AppendInt(dst, int64(p.ICMPType), 10)
	dst = append(dst, `,"icmp_code":`...)
	dst = strconv.AppendInt(dst, int64(p.ICMPCode), 10)
	return append(dst, '}')
}

func appendContainer(dst []byte, c Container) []byte {
	dst = append(dst, `{"container_id":`...)
	dst = jsonenc.AppendString(dst, c.ContainerID)
	dst = append(dst, `,"app_guid":`...)
	dst = jsonenc.AppendString(dst, c.AppGUID)
	dst = append(dst, `,"space_guid":`...)
	dst = jsonenc.AppendString(dst, c.SpaceGUID)
	dst = append(dst, `,"organization_guid":`...)
	dst = jsonenc.AppendString(dst, c.OrganizationGUID)
	dst = append(dst, `,"host_ip":`...)
	dst = jsonenc.AppendString(dst, c.HostIP)
	dst = append(dst, `,"host_guid":`...)
	dst = jsonenc.AppendString(dst, c.HostGUID)
	return append(dst, '}')
}

// appendRFC3339 is t.AppendFormat(dst, "2006-01-02T15:04:05.000000000Z07:00")
// (lager's layout) for a UTC time, digit by digit.
func appendRFC3339(dst []byte, t time.Time) []byte {
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, "2006-01-02T15:04:05.000000000Z07:00")
	}
	hour, minute, sec := t.Clock()
	dst = appendDigits(dst, year, 4)
	dst = append(dst, '-')
	dst = appendDigits(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendDigits(dst, day, 2)
	dst = append(dst, 'T')
	dst = appendDigits(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, minute, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, sec, 2)
	dst = append(dst, '.')
	dst = appendDigits(dst, t.Nanosecond(), 9)
	return append(dst, 'Z')
}

// appendDigits appends the low width decimal digits of n >= 0, zero-padded.
func appendDigits(dst []byte, n, width int) []byte {
	var b [9]byte
	for i := width - 1; i >= 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return append(dst, b[:width]...)
}

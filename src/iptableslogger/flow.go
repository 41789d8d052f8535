package iptableslogger

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ti-mo/conntrack"

	"github.com/netman-release/netman/src/jsonenc"
)

// Verdicts of a flow record.
const (
	VerdictAllowed = "allowed"
	VerdictDenied  = "denied"
)

// Endpoint is one end of a flow: the "source" or "destination" object of a
// flow record. A container of this cell carries its ids, its names as the
// store has them and the cell; another address (a container on another
// cell, a host, the internet) leaves every field empty, and the flow's
// src_ip or dst_ip says who it was.
type Endpoint struct {
	ContainerID      string `json:"container_id"`
	AppGUID          string `json:"app_guid"`
	SpaceGUID        string `json:"space_guid"`
	OrganizationGUID string `json:"organization_guid"`
	AppName          string `json:"app_name"`
	SpaceName        string `json:"space_name"`
	OrganizationName string `json:"organization_name"`
	HostIP           string `json:"host_ip"`
	HostGUID         string `json:"host_guid"`
}

// Flow is a flow record's "flow" object: one connection, as conntrack saw
// it from its first packet to its end (allowed), or one packet a DENY_ rule
// dropped (denied). src is the side that opened it. Bytes count whole IP
// packets, as conntrack accounting does.
type Flow struct {
	Verdict    string `json:"verdict"`
	SrcIP      string `json:"src_ip"`
	DstIP      string `json:"dst_ip"`
	SrcPort    int    `json:"src_port"`
	DstPort    int    `json:"dst_port"`
	Protocol   string `json:"protocol"`
	ICMPType   int    `json:"icmp_type"`
	ICMPCode   int    `json:"icmp_code"`
	SrcPackets uint64 `json:"src_packets"`
	SrcBytes   uint64 `json:"src_bytes"`
	DstPackets uint64 `json:"dst_packets"`
	DstBytes   uint64 `json:"dst_bytes"`
	DurationMS int64  `json:"duration_ms"`
}

// FlowMessage is the lager message of a flow record with the verdict,
// e.g. "cfnetworking.iptables.flow-allowed".
func FlowMessage(verdict string) string { return Source + ".flow-" + verdict }

// AppendFlow appends one flow record line (with its newline), logged at t,
// in the same lager shape as the packet events: data keys "destination",
// "flow", "source" in lager's (sorted) order. Checked byte for byte against
// lager by FuzzAppendFlow.
func AppendFlow(dst []byte, t time.Time, format TimestampFormat, f Flow, src, dest Endpoint) []byte {
	dst = appendLineStart(dst, t, format)
	dst = append(dst, '"')
	dst = append(dst, Source+".flow-"...)
	dst = jsonenc.AppendStringBody(dst, f.Verdict)
	dst = append(dst, '"')
	dst = appendDataStart(dst, format)
	dst = append(dst, `"destination":`...)
	dst = appendEndpoint(dst, dest)
	dst = append(dst, `,"flow":{"verdict":`...)
	dst = jsonenc.AppendString(dst, f.Verdict)
	dst = append(dst, `,"src_ip":`...)
	dst = jsonenc.AppendString(dst, f.SrcIP)
	dst = append(dst, `,"dst_ip":`...)
	dst = jsonenc.AppendString(dst, f.DstIP)
	dst = append(dst, `,"src_port":`...)
	dst = strconv.AppendInt(dst, int64(f.SrcPort), 10)
	dst = append(dst, `,"dst_port":`...)
	dst = strconv.AppendInt(dst, int64(f.DstPort), 10)
	dst = append(dst, `,"protocol":`...)
	dst = jsonenc.AppendString(dst, f.Protocol)
	dst = append(dst, `,"icmp_type":`...)
	dst = strconv.AppendInt(dst, int64(f.ICMPType), 10)
	dst = append(dst, `,"icmp_code":`...)
	dst = strconv.AppendInt(dst, int64(f.ICMPCode), 10)
	dst = append(dst, `,"src_packets":`...)
	dst = strconv.AppendUint(dst, f.SrcPackets, 10)
	dst = append(dst, `,"src_bytes":`...)
	dst = strconv.AppendUint(dst, f.SrcBytes, 10)
	dst = append(dst, `,"dst_packets":`...)
	dst = strconv.AppendUint(dst, f.DstPackets, 10)
	dst = append(dst, `,"dst_bytes":`...)
	dst = strconv.AppendUint(dst, f.DstBytes, 10)
	dst = append(dst, `,"duration_ms":`...)
	dst = strconv.AppendInt(dst, f.DurationMS, 10)
	dst = append(dst, `},"source":`...)
	dst = appendEndpoint(dst, src)
	return append(dst, "}}\n"...)
}

func appendEndpoint(dst []byte, e Endpoint) []byte {
	dst = append(dst, `{"container_id":`...)
	dst = jsonenc.AppendString(dst, e.ContainerID)
	dst = append(dst, `,"app_guid":`...)
	dst = jsonenc.AppendString(dst, e.AppGUID)
	dst = append(dst, `,"space_guid":`...)
	dst = jsonenc.AppendString(dst, e.SpaceGUID)
	dst = append(dst, `,"organization_guid":`...)
	dst = jsonenc.AppendString(dst, e.OrganizationGUID)
	dst = append(dst, `,"app_name":`...)
	dst = jsonenc.AppendString(dst, e.AppName)
	dst = append(dst, `,"space_name":`...)
	dst = jsonenc.AppendString(dst, e.SpaceName)
	dst = append(dst, `,"organization_name":`...)
	dst = jsonenc.AppendString(dst, e.OrganizationName)
	dst = append(dst, `,"host_ip":`...)
	dst = jsonenc.AppendString(dst, e.HostIP)
	dst = append(dst, `,"host_guid":`...)
	dst = jsonenc.AppendString(dst, e.HostGUID)
	return append(dst, '}')
}

// protocolName is the name an iptables LOG line gives a protocol number
// (PROTO=), so flow records and packet events agree.
func protocolName(p uint8) string {
	switch p {
	case 1:
		return "ICMP"
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 58:
		return "ICMPv6"
	case 132:
		return "SCTP"
	case 136:
		return "UDPLITE"
	}
	return strconv.Itoa(int(p))
}

// FlowFromConntrack is the record of a connection conntrack destroyed:
// addresses and ports of the original direction (before any NAT, so the
// container's own), counters of both directions (zero unless
// nf_conntrack_acct is on), and the duration from conntrack's timestamps
// (nf_conntrack_timestamp) or, without them, from started (when the NEW
// event was seen; zero if it was not) to end.
func FlowFromConntrack(f *conntrack.Flow, started, end time.Time) Flow {
	o := f.TupleOrig
	r := Flow{
		Verdict:    VerdictAllowed,
		SrcIP:      addrString(o.IP.SourceAddress),
		DstIP:      addrString(o.IP.DestinationAddress),
		Protocol:   protocolName(o.Proto.Protocol),
		SrcPackets: f.CountersOrig.Packets,
		SrcBytes:   f.CountersOrig.Bytes,
		DstPackets: f.CountersReply.Packets,
		DstBytes:   f.CountersReply.Bytes,
	}
	if o.Proto.ICMPv4 || o.Proto.ICMPv6 {
		r.ICMPType, r.ICMPCode = int(o.Proto.ICMPType), int(o.Proto.ICMPCode)
	} else {
		r.SrcPort, r.DstPort = int(o.Proto.SourcePort), int(o.Proto.DestinationPort)
	}
	switch ts := f.Timestamp; {
	case !ts.Start.IsZero() && !ts.Stop.IsZero():
		r.DurationMS = durationMS(ts.Stop.Sub(ts.Start))
	case !ts.Start.IsZero():
		r.DurationMS = durationMS(end.Sub(ts.Start))
	case !started.IsZero():
		r.DurationMS = durationMS(end.Sub(started))
	}
	return r
}

// FlowFromDenied is the record of a packet a DENY_ rule logged (and the
// rule's chain then dropped): one packet of LEN bytes from the source,
// nothing back.
func FlowFromDenied(p Packet, line string) Flow {
	return Flow{
		Verdict: VerdictDenied,
		SrcIP:   p.SrcIP, DstIP: p.DstIP, SrcPort: p.SrcPort, DstPort: p.DstPort,
		Protocol: p.Protocol, ICMPType: p.ICMPType, ICMPCode: p.ICMPCode,
		SrcPackets: 1, SrcBytes: packetLen(line),
	}
}

// packetLen is the LEN= of a LOG line (the IP packet's length), 0 if it has
// none.
func packetLen(line string) uint64 {
	i := strings.Index(line, " LEN=")
	if i < 0 {
		return 0
	}
	v := line[i+len(" LEN="):]
	if j := strings.IndexAny(v, " \t\n"); j >= 0 {
		v = v[:j]
	}
	n := number(v)
	if n < 0 {
		return 0
	}
	return uint64(n)
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.Unmap().String()
}

func durationMS(d time.Duration) int64 {
	if d < 0 {
		return 0
	}
	return d.Milliseconds()
}

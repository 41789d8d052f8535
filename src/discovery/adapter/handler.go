package adapter

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/silk/overlay6"
)

// DNS response codes used in the Status field.
const (
	rcodeSuccess       = 0
	rcodeServerFailure = 2
	typeA              = 1
	typeAAAA           = 28
)

// IPsGetter is what the handler asks for a name's IPs.
type IPsGetter interface {
	IPs(ctx context.Context, name string) ([]string, error)
}

// Handler answers bosh-dns's GET /?name=<fqdn>&type=<qtype> and the
// healthchecker's GET /health.
type Handler struct {
	logger lager.Logger
	sdc    IPsGetter
	sender *metrics.Sender
	// ipv6 is the dual-stack overlay (ipv6_overlay_network): when enabled,
	// AAAA queries are answered with the IPv6 addresses of the
	// controller's IPv4 answers; the zero Network answers AAAA with no
	// records, as upstream.
	ipv6 overlay6.Network
	// warming is set while the controller answers that its address table
	// is warming up: the start and the end of that are logged once each.
	warming atomic.Bool
}

// NewHandler returns the handler over sdc. sender may be nil; ipv6 is the
// dual-stack overlay, the zero Network when IPv4 only.
func NewHandler(logger lager.Logger, sdc IPsGetter, sender *metrics.Sender, ipv6 overlay6.Network) *Handler {
	return &Handler{logger: logger, sdc: sdc, sender: sender, ipv6: ipv6}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		w.WriteHeader(http.StatusOK)
		return
	}
	query := r.URL.Query()
	name := query.Get("name")
	dnsType := query.Get("type")
	if dnsType == "" {
		dnsType = "1"
	}
	logger := h.logger.Session("serve-request")

	rrType := uint16(typeA)
	if dnsType == "28" && h.ipv6.Enabled() {
		rrType = typeAAAA
	} else if dnsType != "1" {
		h.write(w, http.StatusOK, rcodeSuccess, name, dnsType, nil)
		logger.Debug("unsupported record type", lager.Data{"ips": "", "service-name": name})
		return
	}
	if name == "" {
		h.write(w, http.StatusBadRequest, rcodeServerFailure, name, dnsType, nil)
		logger.Debug("name parameter empty", lager.Data{"ips": "", "service-name": ""})
		return
	}

	start := time.Now()
	ips, err := h.sdc.IPs(r.Context(), name)
	duration := time.Since(start)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		if _, werr := w.Write([]byte(err.Error())); werr != nil {
			h.logger.Error("Error writing to http response body", werr)
		}
		h.logFailure(logger, name, err)
		h.sender.IncrementCounter("DNSRequestFailures")
		return
	}
	if h.warming.CompareAndSwap(true, false) {
		logger.Info("service-discovery-controller-warm", lager.Data{"service-name": name})
	}
	if rrType == typeAAAA {
		ips = h.mapIPv6(logger, name, ips)
	}
	h.writeType(w, http.StatusOK, rcodeSuccess, name, dnsType, rrType, ips)
	logger.Debug("success", lager.Data{"ips": strings.Join(ips, ","), "service-name": name, "duration-ns": duration.Nanoseconds()})
}

// mapIPv6 maps the controller's IPv4 answers to the containers' IPv6
// overlay addresses (IPV6-DESIGN §6); an answer that is not an IPv4
// address has no IPv6 twin and is left out.
func (h *Handler) mapIPv6(logger lager.Logger, name string, ips []string) []string {
	out := make([]string, 0, len(ips))
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Unmap().Is4() {
			logger.Debug("no-ipv6-address", lager.Data{"ip": s, "service-name": name})
			continue
		}
		out = append(out, h.ipv6.Addr(a).String())
	}
	return out
}

// logFailure logs a lookup the controller did not answer. The controller
// warming up after its start is no failure: its first such answer is one
// info line, the rest debug lines (upstream logs an error for each query).
func (h *Handler) logFailure(logger lager.Logger, name string, err error) {
	data := lager.Data{"ips": "", "service-name": name}
	if !Warming(err) {
		logger.Error("could not connect to service discovery controller", err, data)
		return
	}
	data["reason"] = discovery.NotWarm
	if h.warming.CompareAndSwap(false, true) {
		logger.Info("service-discovery-controller-warming-up", data)
		return
	}
	logger.Debug("service-discovery-controller-warming-up", data)
}

// Response is bosh-dns's DNS-over-HTTP JSON answer, keys in upstream's order.
type Response struct {
	Status           int        `json:"Status"`
	TC               bool       `json:"TC"`
	RD               bool       `json:"RD"`
	RA               bool       `json:"RA"`
	AD               bool       `json:"AD"`
	CD               bool       `json:"CD"`
	Question         []Question `json:"Question"`
	Answer           []Answer   `json:"Answer"`
	Additional       []Answer   `json:"Additional"`
	EDNSClientSubnet string     `json:"edns_client_subnet"`
}

// Question echoes the query. Type is the query's type parameter as a JSON
// number (a JSON string if it is not a number: upstream would then send
// invalid JSON).
type Question struct {
	Name string          `json:"name"`
	Type json.RawMessage `json:"type"`
}

// Answer is one A (or, on a dual-stack deployment, AAAA) record; TTL is always 0 so that every query reaches the
// controller.
type Answer struct {
	Name string `json:"name"`
	Type uint16 `json:"type"`
	TTL  uint32 `json:"TTL"`
	Data string `json:"data"`
}

// BuildResponse returns the answer for name with ips as A records.
func BuildResponse(status int, name, dnsType string, ips []string) Response {
	return buildResponse(status, name, dnsType, typeA, ips)
}

// buildResponse returns the answer for name with ips as records of rrType.
func buildResponse(status int, name, dnsType string, rrType uint16, ips []string) Response {
	answers := make([]Answer, len(ips))
	for i, ip := range ips {
		answers[i] = Answer{Name: name, Type: rrType, TTL: 0, Data: ip}
	}
	return Response{
		Status:           status,
		Question:         []Question{{Name: name, Type: questionType(dnsType)}},
		Answer:           answers,
		Additional:       []Answer{},
		EDNSClientSubnet: "0.0.0.0/0",
	}
}

func questionType(t string) json.RawMessage {
	if n, err := strconv.ParseUint(t, 10, 16); err == nil {
		return json.RawMessage(strconv.FormatUint(n, 10))
	}
	b, _ := json.Marshal(t) // a string always marshals
	return b
}

func (h *Handler) write(w http.ResponseWriter, httpStatus, rcode int, name, dnsType string, ips []string) {
	h.writeType(w, httpStatus, rcode, name, dnsType, typeA, ips)
}

func (h *Handler) writeType(w http.ResponseWriter, httpStatus, rcode int, name, dnsType string, rrType uint16, ips []string) {
	body, err := json.Marshal(buildResponse(rcode, name, dnsType, rrType, ips))
	if err != nil {
		h.logger.Error("Error building response", err)
		return
	}
	w.WriteHeader(httpStatus)
	if _, err := w.Write(body); err != nil {
		h.logger.Error("Error writing to http response body", err)
	}
}

package adapter

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/metrics"
)

// DNS response codes used in the Status field.
const (
	rcodeSuccess       = 0
	rcodeServerFailure = 2
	typeA              = 1
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
	// warming is set while the controller answers that its address table
	// is warming up: the start and the end of that are logged once each.
	warming atomic.Bool
}

// NewHandler returns the handler over sdc. sender may be nil.
func NewHandler(logger lager.Logger, sdc IPsGetter, sender *metrics.Sender) *Handler {
	return &Handler{logger: logger, sdc: sdc, sender: sender}
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

	if dnsType != "1" {
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
	h.write(w, http.StatusOK, rcodeSuccess, name, dnsType, ips)
	logger.Debug("success", lager.Data{"ips": strings.Join(ips, ","), "service-name": name, "duration-ns": duration.Nanoseconds()})
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

// Answer is one A record; TTL is always 0 so that every query reaches the
// controller.
type Answer struct {
	Name string `json:"name"`
	Type uint16 `json:"type"`
	TTL  uint32 `json:"TTL"`
	Data string `json:"data"`
}

// BuildResponse returns the answer for name with ips as A records.
func BuildResponse(status int, name, dnsType string, ips []string) Response {
	answers := make([]Answer, len(ips))
	for i, ip := range ips {
		answers[i] = Answer{Name: name, Type: typeA, TTL: 0, Data: ip}
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
	body, err := json.Marshal(BuildResponse(rcode, name, dnsType, ips))
	if err != nil {
		h.logger.Error("Error building response", err)
		return
	}
	w.WriteHeader(httpStatus)
	if _, err := w.Write(body); err != nil {
		h.logger.Error("Error writing to http response body", err)
	}
}

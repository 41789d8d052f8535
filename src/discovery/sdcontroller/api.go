package sdcontroller

import (
	"encoding/json"
	"net/http"
	"path"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/discovery/addresstable"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
)

// Table is what the API reads from the address table.
type Table interface {
	Lookup(hostname string) []string
	All() []addresstable.Address
	IsWarm() bool
}

// host is one entry of a registration answer. Only ip_address carries
// information; the other fields are the empty values upstream always sends
// (its shape comes from an old service registry API).
type host struct {
	IPAddress       string         `json:"ip_address"`
	LastCheckIn     string         `json:"last_check_in"`
	Port            int32          `json:"port"`
	Revision        string         `json:"revision"`
	Service         string         `json:"service"`
	ServiceRepoName string         `json:"service_repo_name"`
	Tags            map[string]any `json:"tags"`
}

// registration is the GET /v1/registration/<name> body, fields in upstream's order.
type registration struct {
	Hosts   []host `json:"hosts"`
	Env     string `json:"env"`
	Service string `json:"service"`
}

type routes struct {
	Addresses []addresstable.Address `json:"addresses"`
}

// emptyTags is shared by every host: it is only ever marshalled.
var emptyTags = map[string]any{}

// API is the controller's HTTPS API, served behind mutual TLS.
type API struct {
	logger   lager.Logger
	table    Table
	sender   *metrics.Sender
	recorder *Recorder
}

// NewAPI returns the API over table. sender and recorder may be nil.
func NewAPI(logger lager.Logger, table Table, sender *metrics.Sender, recorder *Recorder) *API {
	return &API{logger: logger, table: table, sender: sender, recorder: recorder}
}

// Handler routes GET /v1/registration/<name> (timed as
// RegistrationRequestTime/RegistrationRequestCount) and GET /routes.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/registration/", lifecycle.MetricsMiddleware(a.sender, "Registration", http.HandlerFunc(a.registration)))
	mux.HandleFunc("/routes", a.routes)
	return mux
}

func (a *API) registration(w http.ResponseWriter, r *http.Request) {
	serviceKey := path.Base(r.URL.Path)
	if !a.table.IsWarm() {
		http.Error(w, discovery.NotWarm, http.StatusInternalServerError)
		a.logger.Debug("failed-request", lager.Data{"serviceKey": serviceKey, "reason": "address-table-not-warm"})
		return
	}

	start := time.Now()
	ips := a.table.Lookup(serviceKey)
	a.sender.SendDuration("addressTableLookupTime", time.Since(start))

	hosts := make([]host, len(ips))
	for i, ip := range ips {
		hosts[i] = host{IPAddress: ip, Tags: emptyTags}
	}
	body, err := json.Marshal(registration{Hosts: hosts})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if _, err := w.Write(body); err != nil {
		a.logger.Debug("Error writing to http response body")
	}
	if a.recorder != nil {
		a.recorder.RecordDNSRequest()
	}
	a.logger.Debug("HTTPServer access", lager.Data{"serviceKey": serviceKey, "responseJson": string(body)})
}

func (a *API) routes(w http.ResponseWriter, r *http.Request) {
	body, err := json.Marshal(routes{Addresses: a.table.All()})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if _, err := w.Write(body); err != nil {
		a.logger.Debug("Error writing to http response body")
	}
	a.logger.Debug("HTTPServer access", lager.Data{"responseJson": string(body)})
}

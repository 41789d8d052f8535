// Package discovery is netman's service discovery for internal routes
// (*.apps.internal): the NATS message shapes route_emitter and the
// service-discovery-controller exchange, and the pieces both discovery daemons
// share (their loggers, log-level server and HTTP serving). The daemons live
// in the sub-packages: addresstable (the controller's name → IP table),
// controller (service-discovery-controller) and adapter (bosh-dns-adapter).
package discovery

// NotWarm is the body of the controller's 500 answer to a lookup while its
// address table warms up after start-up (upstream's text; bosh-dns-adapter
// tells warm-up from a failure by it).
const NotWarm = "address table is not warm"

// NATS subjects of upstream's service discovery protocol.
const (
	// SubjectRegister carries a RegistryMessage for every running instance
	// with internal routes, every route_emitter sync interval.
	SubjectRegister = "service-discovery.register"
	// SubjectUnregister carries a RegistryMessage when a route goes away.
	SubjectUnregister = "service-discovery.unregister"
	// SubjectGreet is route_emitter's request for a StartMessage at start-up.
	SubjectGreet = "service-discovery.greet"
	// SubjectStart carries the controller's StartMessage whenever it
	// (re)connects, so that route emitters register everything again.
	SubjectStart = "service-discovery.start"
)

// RegistryMessage is route_emitter's register/unregister body. The
// controller reads host, uris and endpoint_updated_at_ns; the other fields
// are what route_emitter sends besides (port has no omitempty upstream).
type RegistryMessage struct {
	Host                 string            `json:"host"`
	Port                 uint32            `json:"port"`
	TLSPort              uint32            `json:"tls_port,omitempty"`
	URIs                 []string          `json:"uris"`
	App                  string            `json:"app,omitempty"`
	PrivateInstanceIndex string            `json:"private_instance_index,omitempty"`
	Tags                 map[string]string `json:"tags,omitempty"`
	EndpointUpdatedAtNs  int64             `json:"endpoint_updated_at_ns,omitempty"`
}

// StartMessage is the controller's service-discovery.start body and its
// reply to service-discovery.greet.
type StartMessage struct {
	ID                               string `json:"id"`
	Host                             string `json:"host"`
	MinimumRegisterIntervalInSeconds int    `json:"minimumRegisterIntervalInSeconds"`
	PruneThresholdInSeconds          int    `json:"pruneThresholdInSeconds"`
}

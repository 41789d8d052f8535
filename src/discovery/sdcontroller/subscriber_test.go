package sdcontroller

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/netman-release/netman/src/testsupport/logtest"
)

// registry is a stand-in for the address table that records changes.
type registry struct {
	changes []string
}

func (r *registry) Add(names []string, ip string) {
	r.changes = append(r.changes, "add "+ip+" "+strings.Join(names, ","))
}
func (r *registry) Remove(names []string, ip string) {
	r.changes = append(r.changes, "remove "+ip+" "+strings.Join(names, ","))
}
func (r *registry) PausePruning()  {}
func (r *registry) ResumePruning() {}
func (r *registry) SetWarm()       {}

func TestHandleMessages(t *testing.T) {
	now := time.Unix(2000, 0)
	reg := &registry{}
	rec := NewRecorder(func() time.Time { return now })
	s := &Subscriber{logger: logtest.New(t), registry: reg, recorder: rec, debug: func() bool { return true }}
	for _, m := range []struct{ subject, data string }{
		// route_emitter's full message
		{"service-discovery.register", `{"host":"10.255.1.2","port":0,"uris":["app.apps.internal","0.app.apps.internal"],` +
			`"app":"guid","private_instance_index":"0","tags":{"component":"route-emitter"},"endpoint_updated_at_ns":1999750000000}`},
		// upstream tests' minimal message
		{"service-discovery.register", `{"host":"192.168.0.1","uris":["app-id.internal.local."]}`},
		{"service-discovery.register", `{"host":"","uris":["x.apps.internal"]}`},
		{"service-discovery.register", `{"host":"10.0.0.1","uris":[]}`},
		{"service-discovery.register", `{"host":"10.0.0.1"}`},
		{"service-discovery.register", `{`},
		{"service-discovery.register", `{"host":5,"uris":["x"]}`},
		{"service-discovery.unregister", `{"host":"10.255.1.2","uris":["0.app.apps.internal"]}`},
		{"service-discovery.unregister", `{"host":"10.255.1.2","uris":[]}`},
		{"service-discovery.unregister", `nope`},
		// Upstream removes with an empty host too: nothing matches it.
		{"service-discovery.unregister", `{"uris":["app.apps.internal"]}`},
	} {
		s.handle(&nats.Msg{Subject: m.subject, Data: []byte(m.data)})
	}
	want := []string{
		"add 10.255.1.2 app.apps.internal,0.app.apps.internal",
		"add 192.168.0.1 app-id.internal.local.",
		"remove 10.255.1.2 0.app.apps.internal",
		"remove  app.apps.internal",
	}
	if diff := cmp.Diff(want, reg.changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	for _, src := range rec.Sources() {
		v, _ := src.Get(t.Context())
		switch src.Name {
		case "registerMessagesReceived":
			if v != 2 {
				t.Errorf("registerMessagesReceived = %v, want 2", v)
			}
		case "maxRouteMessageTimePerInterval":
			if v != 250 {
				t.Errorf("maxRouteMessageTimePerInterval = %v, want 250", v)
			}
		}
	}
}

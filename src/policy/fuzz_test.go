package policy

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The fuzz targets feed arbitrary bodies to the request mappers. Whatever
// the input, a mapper must not panic and must either fail with one of its
// two errors (the API's 400s) or return policies that satisfy every rule, and
// those policies must survive a marshal/map round trip unchanged. The seed
// corpus is in testdata/fuzz/<target>; plain `go test` runs it.

func FuzzMapV1(f *testing.F) {
	f.Add([]byte(`{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"start":1,"end":2}}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ps, err := MapV1(body)
		if err != nil {
			checkMapperError(t, err)
			return
		}
		checkValid(t, ps, MaxPort)
		again, err := MapV1(MarshalV1(ps))
		if err != nil {
			t.Fatalf("re-mapping marshalled policies: %v", err)
		}
		if diff := cmp.Diff(ps, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

func FuzzMapV0(f *testing.F) {
	f.Add([]byte(`{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"udp","port":53}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ps, err := MapV0(body)
		if err != nil {
			checkMapperError(t, err)
			return
		}
		checkValid(t, ps, MaxPort)
		for _, p := range ps {
			if p.Destination.Ports.Start != p.Destination.Ports.End || p.Destination.Port != p.Destination.Ports.Start {
				t.Fatalf("v0 policy is not a single port: %+v", p)
			}
		}
		again, err := MapV0(MarshalV0(ps))
		if err != nil {
			t.Fatalf("re-mapping marshalled policies: %v", err)
		}
		if diff := cmp.Diff(ps, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

func checkMapperError(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, ErrUnmarshal) == errors.Is(err, ErrValidate) {
		t.Fatalf("error %q wraps neither or both mapper errors", err)
	}
}

func checkValid(t *testing.T, ps []Policy, maxPort int) {
	t.Helper()
	if len(ps) == 0 {
		t.Fatal("accepted an empty policy list")
	}
	for _, p := range ps {
		d := p.Destination
		switch {
		case p.Source.ID == "" || d.ID == "":
			t.Fatalf("accepted a policy without ids: %+v", p)
		case d.Protocol != ProtocolTCP && d.Protocol != ProtocolUDP:
			t.Fatalf("accepted protocol %q", d.Protocol)
		case d.Ports.Start < 1 || d.Ports.End > maxPort || d.Ports.Start > d.Ports.End:
			t.Fatalf("accepted ports %+v", d.Ports)
		case p.Source.Tag != "" || d.Tag != "":
			t.Fatalf("accepted tags: %+v", p)
		case (d.Ports.Start == d.Ports.End) != (d.Port == d.Ports.Start):
			t.Fatalf("legacy port %d does not match range %+v", d.Port, d.Ports)
		}
	}
}

package policy

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func v1(src, dst, proto string, start, end int) Policy { return NewPolicy(src, dst, proto, start, end) }

func TestMapV1(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		want       []Policy
		wantErr    string
	}{
		{name: "one", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"start":8080,"end":8080}}}]}`,
			want: []Policy{v1("a", "b", "tcp", 8080, 8080)}},
		{name: "range keeps port 0", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"udp","ports":{"start":1,"end":65535}}}]}`,
			want: []Policy{{Source: Source{ID: "a"}, Destination: Destination{ID: "b", Protocol: "udp", Port: 0, Ports: Ports{1, 65535}}}}},
		{name: "keys case-insensitive, unknown and egress keys ignored", body: `{"POLICIES":[{"Source":{"ID":"a","type":"app"},"destination":{"id":"b","Protocol":"tcp","ports":{"START":5,"End":6},"ips":[{"start":"1.1.1.1","end":"1.1.1.2"}],"extra":1}}],"total_policies":9}`,
			want: []Policy{v1("a", "b", "tcp", 5, 6)}},
		{name: "empty body", body: ``, wantErr: "unmarshal json: unexpected end of JSON input"},
		{name: "not json", body: `nope`, wantErr: "unmarshal json: invalid character 'o' in literal null (expecting 'u')"},
		{name: "wrong type", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"start":"80","end":80}}}]}`,
			wantErr: "unmarshal json: json: cannot unmarshal string into Go struct field Ports.policies.destination.ports.start of type int"},
		{name: "ignored egress key still type-checked", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"start":80,"end":80},"ips":"x"}}]}`,
			wantErr: "unmarshal json: json: cannot unmarshal string into Go struct field Destination.policies.destination.ips of type []policy.IPRange"},
		{name: "port overflows int", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"start":1e40,"end":80}}}]}`,
			wantErr: "unmarshal json: json: cannot unmarshal number 1e40 into Go struct field Ports.policies.destination.ports.start of type int"},
		{name: "no policies key", body: `{}`, wantErr: "validate policies: missing policies"},
		{name: "empty list", body: `{"policies":[]}`, wantErr: "validate policies: missing policies"},
		{name: "null list", body: `{"policies":null}`, wantErr: "validate policies: missing policies"},
		{name: "missing source", body: `{"policies":[{"source":{},"destination":{"id":"b","protocol":"tcp","ports":{"start":1,"end":1}}}]}`, wantErr: "validate policies: missing source id"},
		{name: "missing destination", body: `{"policies":[{"source":{"id":"a"},"destination":{"protocol":"tcp","ports":{"start":1,"end":1}}}]}`, wantErr: "validate policies: missing destination id"},
		{name: "source checked before destination", body: `{"policies":[{}]}`, wantErr: "validate policies: missing source id"},
		{name: "protocol", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"icmp","ports":{"start":1,"end":1}}}]}`, wantErr: "validate policies: invalid destination protocol, specify either udp or tcp"},
		{name: "protocol case-sensitive", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"TCP","ports":{"start":1,"end":1}}}]}`, wantErr: "validate policies: invalid destination protocol, specify either udp or tcp"},
		{name: "protocol before ports", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"all"}}]}`, wantErr: "validate policies: invalid destination protocol, specify either udp or tcp"},
		{name: "reversed range", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"start":9,"end":8}}}]}`, wantErr: "validate policies: invalid port range 9-8, start must be less than or equal to end"},
		{name: "reversed negative range", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"start":-1,"end":-2}}}]}`, wantErr: "validate policies: invalid port range -1--2, start must be less than or equal to end"},
		{name: "negative start", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"start":-1,"end":2}}}]}`, wantErr: "validate policies: invalid start port -1, must be in range 1-65535"},
		{name: "missing start", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"end":2}}}]}`, wantErr: "validate policies: missing start port"},
		{name: "v0 body to v1", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","port":8080}}]}`, wantErr: "validate policies: missing start port"},
		{name: "end too big", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"start":1,"end":65536}}}]}`, wantErr: "validate policies: invalid end port 65536, must be in range 1-65535"},
		{name: "source tag", body: `{"policies":[{"source":{"id":"a","tag":"01"},"destination":{"id":"b","protocol":"tcp","ports":{"start":1,"end":1}}}]}`, wantErr: "validate policies: tags may not be specified"},
		{name: "destination tag", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","tag":"01","protocol":"tcp","ports":{"start":1,"end":1}}}]}`, wantErr: "validate policies: tags may not be specified"},
		{name: "first failure wins", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"start":1,"end":1}}},{"source":{"id":"a"},"destination":{"id":"b","protocol":"udp"}},{"source":{}}]}`, wantErr: "validate policies: missing start port"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MapV1([]byte(tt.body))
			checkMapped(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestMapV0(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		want       []Policy
		wantErr    string
	}{
		{name: "one", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"udp","port":53}}]}`,
			want: []Policy{v1("a", "b", "udp", 53, 53)}},
		{name: "ports ignored", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","port":80,"ports":{"start":1,"end":9}}}]}`,
			want: []Policy{v1("a", "b", "tcp", 80, 80)}},
		{name: "empty", body: ``, wantErr: "unmarshal json: unexpected end of JSON input"},
		{name: "wrong type", body: `{"policies":[{"source":{"id":7}}]}`, wantErr: "unmarshal json: json: cannot unmarshal number into Go struct field Source.policies.source.id of type string"},
		{name: "missing policies", body: `{"policies":[]}`, wantErr: "validate policies: missing policies"},
		{name: "missing source", body: `{"policies":[{"destination":{"id":"b","protocol":"tcp","port":1}}]}`, wantErr: "validate policies: missing source id"},
		{name: "missing destination", body: `{"policies":[{"source":{"id":"a"},"destination":{"protocol":"tcp","port":1}}]}`, wantErr: "validate policies: missing destination id"},
		{name: "protocol", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"all","port":1}}]}`, wantErr: "validate policies: invalid destination protocol, specify either udp or tcp"},
		{name: "negative port", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","port":-3}}]}`, wantErr: "validate policies: invalid port -3, must be in range 1-65535"},
		{name: "port too big (netman fix)", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","port":70000}}]}`, wantErr: "validate policies: invalid port 70000, must be in range 1-65535"},
		{name: "missing port", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp"}}]}`, wantErr: "validate policies: missing port"},
		{name: "v1 body to v0", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"start":1,"end":1}}}]}`, wantErr: "validate policies: missing port"},
		{name: "tags", body: `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","tag":"x","protocol":"tcp","port":1}}]}`, wantErr: "validate policies: tags may not be specified"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MapV0([]byte(tt.body))
			checkMapped(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func checkMapped(t *testing.T, got []Policy, err error, want []Policy, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || err.Error() != wantErr {
			t.Fatalf("err = %v, want %q", err, wantErr)
		}
		if strings.HasPrefix(wantErr, "unmarshal json") != errors.Is(err, ErrUnmarshal) || strings.HasPrefix(wantErr, "validate") != errors.Is(err, ErrValidate) {
			t.Fatalf("err %v wraps the wrong sentinel", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("policies (-want +got):\n%s", diff)
	}
}

// reference encodings: what upstream's reflection-based marshalling emits.
type refV1 struct {
	TotalPolicies int `json:"total_policies"`
	Policies      []struct {
		Source struct {
			ID  string `json:"id"`
			Tag string `json:"tag,omitempty"`
		} `json:"source"`
		Destination struct {
			ID       string `json:"id"`
			Tag      string `json:"tag,omitempty"`
			Protocol string `json:"protocol"`
			Ports    struct {
				Start int `json:"start"`
				End   int `json:"end"`
			} `json:"ports"`
		} `json:"destination"`
	} `json:"policies"`
}

type refV0Policy struct {
	Source struct {
		ID  string `json:"id"`
		Tag string `json:"tag,omitempty"`
	} `json:"source"`
	Destination struct {
		ID       string `json:"id"`
		Tag      string `json:"tag,omitempty"`
		Protocol string `json:"protocol"`
		Port     int    `json:"port"`
	} `json:"destination"`
}

func referenceV1(t *testing.T, ps []Policy) []byte {
	t.Helper()
	var r refV1
	r.TotalPolicies = len(ps)
	r.Policies = make([]struct {
		Source struct {
			ID  string `json:"id"`
			Tag string `json:"tag,omitempty"`
		} `json:"source"`
		Destination struct {
			ID       string `json:"id"`
			Tag      string `json:"tag,omitempty"`
			Protocol string `json:"protocol"`
			Ports    struct {
				Start int `json:"start"`
				End   int `json:"end"`
			} `json:"ports"`
		} `json:"destination"`
	}, len(ps))
	for i, p := range ps {
		r.Policies[i].Source.ID, r.Policies[i].Source.Tag = p.Source.ID, p.Source.Tag
		d := &r.Policies[i].Destination
		d.ID, d.Tag, d.Protocol = p.Destination.ID, p.Destination.Tag, p.Destination.Protocol
		d.Ports.Start, d.Ports.End = p.Destination.Ports.Start, p.Destination.Ports.End
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func referenceV0(t *testing.T, ps []Policy) []byte {
	t.Helper()
	out := []refV0Policy{}
	for _, p := range ps {
		if p.Destination.Ports.Start != p.Destination.Ports.End {
			continue
		}
		var r refV0Policy
		r.Source.ID, r.Source.Tag = p.Source.ID, p.Source.Tag
		r.Destination.ID, r.Destination.Tag, r.Destination.Protocol = p.Destination.ID, p.Destination.Tag, p.Destination.Protocol
		r.Destination.Port = p.Destination.Ports.Start
		out = append(out, r)
	}
	b, err := json.Marshal(struct {
		TotalPolicies int           `json:"total_policies"`
		Policies      []refV0Policy `json:"policies"`
	}{len(out), out})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var marshalCases = [][]Policy{
	nil,
	{},
	{v1("a", "b", "tcp", 8080, 8080)},
	{v1("a", "b", "tcp", 8080, 8090), v1("c", "d", "udp", 53, 53)},
	{{Source: Source{ID: "a", Tag: "0001"}, Destination: Destination{ID: "b", Tag: "0002", Protocol: "tcp", Port: 1, Ports: Ports{1, 1}}}},
	{v1(`we"ird<&>\`, "ünï\x01code\xff", "tcp", 1, 2)},
}

func TestMarshalV1MatchesEncodingJSON(t *testing.T) {
	for _, ps := range marshalCases {
		got, want := MarshalV1(ps), referenceV1(t, ps)
		if string(got) != string(want) {
			t.Errorf("MarshalV1(%v)\n got %s\nwant %s", ps, got, want)
		}
	}
	if got := string(MarshalV1(nil)); got != `{"total_policies":0,"policies":[]}` {
		t.Errorf("empty = %s", got)
	}
}

func TestMarshalV0MatchesEncodingJSONAndDropsRanges(t *testing.T) {
	for _, ps := range marshalCases {
		got, want := MarshalV0(ps), referenceV0(t, ps)
		if string(got) != string(want) {
			t.Errorf("MarshalV0(%v)\n got %s\nwant %s", ps, got, want)
		}
	}
	got := string(MarshalV0([]Policy{v1("a", "b", "tcp", 1, 9), v1("c", "d", "udp", 53, 53)}))
	if want := `{"total_policies":1,"policies":[{"source":{"id":"c"},"destination":{"id":"d","protocol":"udp","port":53}}]}`; got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestMarshalTags(t *testing.T) {
	if got := string(MarshalTags(nil)); got != `{"tags":[]}` {
		t.Errorf("empty = %s", got)
	}
	got := string(MarshalTags([]Tag{{ID: "a", Tag: "0001", Type: "app"}, {ID: "r", Tag: "0002", Type: "router"}}))
	if want := `{"tags":[{"id":"a","tag":"0001","type":"app"},{"id":"r","tag":"0002","type":"router"}]}`; got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestV1RoundTrip(t *testing.T) {
	in := []Policy{v1("a", "b", "tcp", 1, 65535), v1("c", "d", "udp", 53, 53)}
	out, err := MapV1(MarshalV1(in))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Fatalf("round trip (-in +out):\n%s", diff)
	}
}

func BenchmarkMarshalV1(b *testing.B) {
	ps := make([]Policy, 10000)
	for i := range ps {
		ps[i] = v1("2ffe4b0f-b03c-48bb-a4fa-bf22657d34a2", "5346072e-7265-45f9-b70a-80c42e3f13ae", "tcp", 8080, 8080+i%2)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = MarshalV1(ps)
	}
}

// BenchmarkMarshalV1Reflection is the same list through encoding/json, as
// upstream encodes it, for comparison.
func BenchmarkMarshalV1Reflection(b *testing.B) {
	type ports struct {
		Start int `json:"start"`
		End   int `json:"end"`
	}
	type end struct {
		ID       string `json:"id"`
		Tag      string `json:"tag,omitempty"`
		Protocol string `json:"protocol,omitempty"`
		Ports    *ports `json:"ports,omitempty"`
	}
	type pol struct {
		Source      end `json:"source"`
		Destination end `json:"destination"`
	}
	ps := make([]pol, 10000)
	for i := range ps {
		ps[i] = pol{end{ID: "2ffe4b0f-b03c-48bb-a4fa-bf22657d34a2"}, end{ID: "5346072e-7265-45f9-b70a-80c42e3f13ae", Protocol: "tcp", Ports: &ports{8080, 8080 + i%2}}}
	}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = json.Marshal(struct {
			Total    int   `json:"total_policies"`
			Policies []pol `json:"policies"`
		}{len(ps), ps})
	}
}

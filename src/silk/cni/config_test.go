package cni

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"
)

func TestParseNetConf(t *testing.T) {
	conf, err := ParseNetConf([]byte(`{"cniVersion":"1.0.0","name":"silk","type":"silk-cni","daemonPort":23954,
		"dataDir":"/var/vcap/data/host-local","datastore":"/var/vcap/data/silk/store.json","mtu":0}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.Name != "silk" || conf.DaemonPort != 23954 || conf.DataDir != "/var/vcap/data/host-local" ||
		conf.Datastore != "/var/vcap/data/silk/store.json" || conf.MTU != 0 || conf.SubnetFile != "" {
		t.Errorf("parsed %+v", conf)
	}
	if err := conf.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if got := newIPAM(conf).dir(); got != "/var/vcap/data/host-local/ipam/silk" {
		t.Errorf("ipam dir %s", got)
	}

	for _, v := range SupportedVersions {
		if _, err := ParseNetConf([]byte(`{"cniVersion":"` + v + `","name":"silk"}`)); err != nil {
			t.Errorf("version %s: %v", v, err)
		}
	}

	errTests := []struct {
		name, stdin string
		code        uint
		msg         string
	}{
		{"malformed", `{"cniVersion":`, types.ErrDecodingFailure, "invalid network config"},
		{"not an object", `[]`, types.ErrDecodingFailure, "invalid network config"},
		{"unknown version", `{"cniVersion":"9.9.9","name":"silk"}`, types.ErrIncompatibleCNIVersion, "incompatible CNI versions"},
		{"too old", `{"cniVersion":"0.2.0","name":"silk"}`, types.ErrIncompatibleCNIVersion, "incompatible CNI versions"},
		{"no version", `{"name":"silk"}`, types.ErrIncompatibleCNIVersion, "incompatible CNI versions"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseNetConf([]byte(tt.stdin))
			var e *types.Error
			if !errors.As(err, &e) || e.Code != tt.code || e.Msg != tt.msg {
				t.Fatalf("got %#v, want code %d msg %q", err, tt.code, tt.msg)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good := func() *NetConf {
		c := &NetConf{DataDir: "/d", Datastore: "/s.json", DaemonPort: 23954}
		c.Name = "silk"
		return c
	}
	tests := []struct {
		name   string
		change func(*NetConf)
		want   []string // substrings of details; none = valid
	}{
		{"ok", func(*NetConf) {}, nil},
		{"mtu override", func(c *NetConf) { c.MTU = 1350 }, nil},
		{"subnet file, no port", func(c *NetConf) { c.DaemonPort = 0; c.SubnetFile = "/run/flannel/subnet.env" }, nil},
		{"negative mtu", func(c *NetConf) { c.MTU = -1 }, []string{"mtu: must be at least 0"}},
		{"tiny mtu", func(c *NetConf) { c.MTU = 20 }, []string{"mtu: must be 0"}},
		{"no port", func(c *NetConf) { c.DaemonPort = 0 }, []string{"daemonPort"}},
		{"everything missing", func(c *NetConf) { *c = NetConf{} }, []string{"name:", "dataDir:", "datastore:", "daemonPort:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.change(c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var e *types.Error
			if !errors.As(err, &e) || e.Code != types.ErrInvalidNetworkConfig || e.Msg != "invalid network config" {
				t.Fatalf("got %#v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(e.Details, w) {
					t.Errorf("details %q lack %q", e.Details, w)
				}
			}
		})
	}
}

// TestNetConfMarshalsEveryKey: a NetConf written as JSON (the lab renders
// the wrapper's delegate from one) reads back the same, silk-cni's own
// keys included, through a pointer as through a value.
func TestNetConfMarshalsEveryKey(t *testing.T) {
	want := &NetConf{
		PluginConf: types.PluginConf{CNIVersion: "1.0.0", Name: "silk", Type: "silk-cni"},
		DataDir:    "/var/vcap/data/host-local", Datastore: "/var/vcap/data/silk/store.json", DaemonPort: 23954, MTU: 1400,
	}
	for _, v := range []any{want, *want} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseNetConf(b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%T marshalled as %s, read back (-want +got):\n%s", v, b, diff)
		}
	}
}

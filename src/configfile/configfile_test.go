package configfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestProblemsCollectEverything(t *testing.T) {
	dir := t.TempDir()
	readable := filepath.Join(dir, "ok.crt")
	if err := os.WriteFile(readable, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var p Problems
	p.RequiredString("listen_host", " ")
	p.Required("vni", false)
	p.Min("poll_interval", 0, 1)
	p.Port("listen_port", 0)
	p.Port("health_check_port", 65536)
	p.Port("debug_server_port", 8080)
	p.CIDR("network", "10.255.0.0/33")
	p.CIDR("overlay_network", "")
	p.CIDR("v6", "fd00::/64")
	if got, ok := p.CIDR("good", "10.255.0.0/16"); !ok || got.Bits() != 16 {
		t.Errorf("good CIDR = %v %v", got, ok)
	}
	p.IPv4("underlay_ip", "10.0.0.256")
	p.IPv4("ok_ip", "10.0.0.1")
	p.ReadableFile("ca_cert_file", filepath.Join(dir, "missing.crt"))
	p.ReadableFile("cert", readable)
	p.ReadableFile("key", "")
	p.Merge("database.", []string{"host: missing required value"})
	p.OptionalFile("uaa_ca", "")
	p.OptionalFile("cc_ca_cert", filepath.Join(dir, "missing.crt"))
	if p.Range("tag_length", 0, 1, 3) || p.Range("vni", 4, 1, 3) || !p.Range("ok_range", 2, 1, 3) {
		t.Error("Range reports the wrong values in range")
	}
	atoi := func(s string) (int, error) {
		if s != "1" {
			return 0, errors.New("not one")
		}
		return 1, nil
	}
	Parse(&p, "metron_address", "", atoi)
	Parse(&p, "parsed", "2", atoi)
	Parse(&p, "parsed_ok", "1", atoi)
	ParseOptional(&p, "log_level", "", atoi)
	ParseOptional(&p, "optional", "x", atoi)

	want := []string{
		"listen_host: missing required value",
		"vni: missing required value",
		"poll_interval: must be at least 1 (got 0)",
		"listen_port: must be a port between 1 and 65535 (got 0)",
		"health_check_port: must be a port between 1 and 65535 (got 65536)",
		`network: invalid IPv4 CIDR "10.255.0.0/33"`,
		"overlay_network: missing required value",
		`v6: invalid IPv4 CIDR "fd00::/64"`,
		`underlay_ip: invalid IPv4 address "10.0.0.256"`,
		"ca_cert_file: unreadable file " + filepath.Join(dir, "missing.crt") + ": no such file or directory",
		"key: missing required value",
		"database.host: missing required value",
		"cc_ca_cert: unreadable file " + filepath.Join(dir, "missing.crt") + ": no such file or directory",
		"tag_length: missing required value",
		"vni: must be between 1 and 3 (got 4)",
		"metron_address: missing required value",
		"parsed: not one",
		"optional: not one",
	}
	if diff := cmp.Diff(want, p.List()); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	var cfgErr *Error
	if err := p.Err(); !errors.As(err, &cfgErr) || len(cfgErr.Problems) != len(want) {
		t.Fatalf("Err() = %v", err)
	}
}

func TestErrFormatting(t *testing.T) {
	var none Problems
	if err := none.Err(); err != nil {
		t.Fatalf("no problems gave %v", err)
	}
	var one Problems
	one.Addf("a: b")
	if got := one.Err().Error(); got != "invalid config: a: b" {
		t.Errorf("one problem = %q", got)
	}
	var two Problems
	two.Addf("a: b")
	two.Addf("c: d")
	if got := two.Err().Error(); got != "invalid config:\n  - a: b\n  - c: d" {
		t.Errorf("two problems = %q", got)
	}
}

func TestLoadJSON(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.json")
	if err := os.WriteFile(path, []byte(`{"a": 1, "unknown_key": true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var v struct {
		A int `json:"a"`
	}
	if err := LoadJSON(path, &v); err != nil || v.A != 1 {
		t.Fatalf("LoadJSON = %v, %+v", err, v)
	}
	if err := os.WriteFile(path, []byte(`{"a": "x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := LoadJSON(path, &v); err == nil {
		t.Fatal("type mismatch accepted")
	}
	if err := LoadJSON(filepath.Join(dir, "none.json"), &v); err == nil {
		t.Fatal("missing file accepted")
	}
}

type loadable struct {
	Port  int    `json:"port"`
	Level string `json:"level"`
}

func (l loadable) Validate() error {
	var p Problems
	p.Port("port", l.Port)
	return p.Err()
}

// TestLoad: the file is read over the defaults given, then validated.
func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, []byte(`{"port": 4003}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, loadable{Level: "info"})
	if err != nil || c != (loadable{Port: 4003, Level: "info"}) {
		t.Errorf("Load = %+v, %v", c, err)
	}
	if err := os.WriteFile(path, []byte(`{"port": 0}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, loadable{}); err == nil || err.Error() != "invalid config: port: must be a port between 1 and 65535 (got 0)" {
		t.Errorf("invalid file: %v", err)
	}
	if c, err := Load(path+".missing", loadable{Level: "info"}); err == nil || c != (loadable{}) {
		t.Errorf("missing file = %+v, %v; want the zero config and an error", c, err)
	}
}

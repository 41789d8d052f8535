// Package configfile loads daemon config files and collects every problem in
// one error, so an operator fixing a BOSH manifest sees the whole list at
// once instead of one failure per deploy.
package configfile

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
)

// LoadJSON reads a JSON config file into v. Unknown keys are ignored, as
// upstream does, so templates may carry keys newer than the binary.
func LoadJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("parsing config %s: %w", path, err)
	}
	return nil
}

// Load reads the config file at path over the defaults already in c and
// validates the result: what every daemon's LoadConfig does. Errors read
// "reading config: ...", "parsing config ...: ..." or "invalid config: ...".
func Load[C interface{ Validate() error }](path string, c C) (C, error) {
	if err := LoadJSON(path, &c); err != nil {
		var zero C
		return zero, err
	}
	return c, c.Validate()
}

// Problems accumulates validation failures keyed by the JSON key at fault.
type Problems struct {
	list []string
}

// Addf records one problem.
func (p *Problems) Addf(format string, args ...any) {
	p.list = append(p.list, fmt.Sprintf(format, args...))
}

// Required records key as missing when it holds the zero value.
func (p *Problems) Required(key string, present bool) {
	if !present {
		p.Addf("%s: missing required value", key)
	}
}

// RequiredString is Required for strings.
func (p *Problems) RequiredString(key, value string) {
	p.Required(key, strings.TrimSpace(value) != "")
}

// Min records key as invalid when value < minimum.
func (p *Problems) Min(key string, value, minimum int) {
	if value < minimum {
		p.Addf("%s: must be at least %d (got %d)", key, minimum, value)
	}
}

// Port records key as invalid unless value is a usable TCP/UDP port.
func (p *Problems) Port(key string, value int) {
	if value < 1 || value > 65535 {
		p.Addf("%s: must be a port between 1 and 65535 (got %d)", key, value)
	}
}

// CIDR parses an IPv4 CIDR and records a problem when it is missing or bad.
func (p *Problems) CIDR(key, value string) (netip.Prefix, bool) {
	if value == "" {
		p.Required(key, false)
		return netip.Prefix{}, false
	}
	prefix, err := netip.ParsePrefix(value)
	if err != nil || !prefix.Addr().Is4() {
		p.Addf("%s: invalid IPv4 CIDR %q", key, value)
		return netip.Prefix{}, false
	}
	return prefix, true
}

// IPv4 records a problem unless value is an IPv4 address.
func (p *Problems) IPv4(key, value string) {
	if value == "" {
		p.Required(key, false)
		return
	}
	if a, err := netip.ParseAddr(value); err != nil || !a.Is4() {
		p.Addf("%s: invalid IPv4 address %q", key, value)
	}
}

// Range records key as missing when value is 0, and as invalid when it is
// outside lo..hi; it reports whether value is in range.
func (p *Problems) Range(key string, value, lo, hi int) bool {
	switch {
	case value == 0 && (lo > 0 || hi < 0):
		p.Required(key, false)
	case value < lo || value > hi:
		p.Addf("%s: must be between %d and %d (got %d)", key, lo, hi, value)
	default:
		return true
	}
	return false
}

// Parse records key as missing when value is empty, and parse's error as
// key's problem otherwise (e.g. Parse(&p, "metron_address", v, metrics.MetronPort)).
func Parse[T any](p *Problems, key, value string, parse func(string) (T, error)) {
	if value == "" {
		p.Required(key, false)
		return
	}
	ParseOptional(p, key, value, parse)
}

// ParseOptional is Parse for a key that may be left empty.
func ParseOptional[T any](p *Problems, key, value string, parse func(string) (T, error)) {
	if value == "" {
		return
	}
	if _, err := parse(value); err != nil {
		p.Addf("%s: %v", key, err)
	}
}

// OptionalFile is ReadableFile for a key that may be left empty.
func (p *Problems) OptionalFile(key, path string) {
	if path != "" {
		p.ReadableFile(key, path)
	}
}

// ReadableFile records a problem when path is empty or cannot be read.
func (p *Problems) ReadableFile(key, path string) {
	if path == "" {
		p.Required(key, false)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		p.Addf("%s: unreadable file %s: %v", key, path, unwrapPathError(err))
		return
	}
	_ = f.Close()
}

// HTTPURL records a problem when value is empty or not an http(s) URL
// with a host.
func (p *Problems) HTTPURL(key, value string) {
	if value == "" {
		p.Required(key, false)
		return
	}
	u, err := url.Parse(value)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.Addf("%s: want an http or https URL (got %q)", key, value)
	}
}

// Merge adds problems found by a nested validator, prefixing their keys.
func (p *Problems) Merge(prefix string, other []string) {
	for _, o := range other {
		p.list = append(p.list, prefix+o)
	}
}

// List returns the problems in the order found.
func (p *Problems) List() []string { return append([]string(nil), p.list...) }

// Err returns nil when there were no problems, otherwise one error naming
// every problem.
func (p *Problems) Err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &Error{Problems: p.List()}
}

// Error is a config validation failure listing every problem.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return "invalid config: " + e.Problems[0]
	}
	return "invalid config:\n  - " + strings.Join(e.Problems, "\n  - ")
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

package discovery

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/netman-release/netman/src/configfile"
)

// Duration is a config duration written as a Go duration string ("30s"),
// as upstream's DurationFlag. An empty string is zero.
type Duration time.Duration

// UnmarshalJSON parses a quoted Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\": %w", err)
	}
	if s == "" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// CheckPort records a problem unless value, a port written as a string as
// both discovery daemons' configs do, is a usable TCP port.
func CheckPort(p *configfile.Problems, key, value string) {
	if value == "" {
		p.Required(key, false)
		return
	}
	n, err := strconv.Atoi(value)
	if err != nil {
		p.Addf("%s: must be a port between 1 and 65535 (got %q)", key, value)
		return
	}
	p.Port(key, n)
}

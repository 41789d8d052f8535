package metrics

import (
	"time"
)

// SetTransportForTest replaces the UDP socket and clock so send failures and
// log throttling can be exercised deterministically.
func (s *Sender) SetTransportForTest(w interface {
	Write([]byte) (int, error)
	Close() error
}, now func() time.Time) {
	s.conn = w
	s.now = now
}

var SanitizeName = sanitizeName

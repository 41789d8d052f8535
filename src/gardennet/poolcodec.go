package gardennet

import (
	"encoding/json"
	"strconv"

	"github.com/netman-release/netman/src/jsonenc"
)

// The state file is read and rewritten on every up and down, and on a busy
// cell it holds thousands of ports; encoding/json spends milliseconds on
// it. These two functions handle the one shape the file has, byte for byte
// as encoding/json would write it, and defer to encoding/json for anything
// else.

// appendPool appends the on-disk form of p: handles sorted (as
// encoding/json orders map keys), each handle's ports ascending. A handle
// without ports is left out, as upstream's port-to-handle map would.
func appendPool(dst []byte, p *Pool) []byte {
	dst = append(dst, `{"acquired_ports":{`...)
	first := true
	for _, e := range p.entries {
		if len(e.ports) == 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = jsonenc.AppendString(dst, e.handle)
		dst = append(dst, ':', '[')
		for i, port := range e.ports {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendUint(dst, uint64(port), 10)
		}
		dst = append(dst, ']')
	}
	return append(dst, "}}"...)
}

// decodePool parses the state file into p.
func decodePool(data []byte, p *Pool) error {
	if entries, ok := scanPool(data); ok {
		p.entries = entries
		p.normalize()
		return nil
	}
	var in poolJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	p.set(in.AcquiredPorts)
	return nil
}

// scanPool reads {"acquired_ports":{"<handle>":[port,...],...}} with any
// whitespace; ok is false for anything else (escapes in handles, other
// keys, numbers that are not plain uint32s, handles out of order), which
// encoding/json then handles or rejects.
func scanPool(data []byte) (entries []poolEntry, ok bool) {
	s := scanner{data: data}
	if !s.consume('{') {
		return nil, false
	}
	if s.consume('}') {
		return nil, s.end()
	}
	if key, ok := s.str(); !ok || key != "acquired_ports" || !s.consume(':') {
		return nil, false
	}
	if !s.consume('{') {
		return nil, false
	}
	// One backing array for every handle's ports; each entry's slice is
	// clipped so appending to it copies.
	all := make([]uint32, 0, len(data)/8)
	if !s.consume('}') {
		for {
			handle, ok := s.str()
			if !ok || !s.consume(':') || !s.consume('[') {
				return nil, false
			}
			if n := len(entries); n > 0 && entries[n-1].handle >= handle {
				// Not as encoding/json writes it (it sorts keys); let it
				// decide, e.g. that a repeated key's last value wins.
				return nil, false
			}
			start := len(all)
			if !s.consume(']') {
				for {
					port, ok := s.uint32()
					if !ok {
						return nil, false
					}
					all = append(all, port)
					if s.consume(']') {
						break
					}
					if !s.consume(',') {
						return nil, false
					}
				}
			}
			entries = append(entries, poolEntry{handle: handle, ports: all[start:len(all):len(all)]})
			if s.consume('}') {
				break
			}
			if !s.consume(',') {
				return nil, false
			}
		}
	}
	if !s.consume('}') {
		return nil, false
	}
	return entries, s.end()
}

type scanner struct {
	data []byte
	i    int
}

func (s *scanner) skipSpace() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) consume(c byte) bool {
	s.skipSpace()
	if s.i < len(s.data) && s.data[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) end() bool {
	s.skipSpace()
	return s.i == len(s.data)
}

// str reads a plain ASCII string (no escapes or control characters).
func (s *scanner) str() (string, bool) {
	if !s.consume('"') {
		return "", false
	}
	start := s.i
	for s.i < len(s.data) {
		switch c := s.data[s.i]; {
		case c == '"':
			v := string(s.data[start:s.i])
			s.i++
			return v, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return "", false // escapes, and UTF-8 checks, left to encoding/json
		}
		s.i++
	}
	return "", false
}

// uint32 reads a plain decimal number that fits a uint32.
func (s *scanner) uint32() (uint32, bool) {
	s.skipSpace()
	start := s.i
	var v uint64
	for s.i < len(s.data) && s.data[s.i] >= '0' && s.data[s.i] <= '9' {
		v = v*10 + uint64(s.data[s.i]-'0')
		if v > 1<<32-1 {
			return 0, false
		}
		s.i++
	}
	n := s.i - start
	if n == 0 || (n > 1 && s.data[start] == '0') {
		return 0, false
	}
	if s.i < len(s.data) {
		switch s.data[s.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	return uint32(v), true
}

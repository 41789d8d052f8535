// Package jsonenc is the JSON string encoding netman's hand-written
// encoders share (the internal API's policy and security group pages, the
// lease index, iptables-logger's events, gardennet's port pool): those write
// their documents byte by byte for speed, and each must still produce
// exactly what encoding/json would.
package jsonenc

import "unicode/utf8"

// AppendString appends s as a quoted JSON string, byte for byte as
// encoding/json's Marshal writes it (HTML-safe), without allocating.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = AppendStringBody(dst, s)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// safeASCII marks the ASCII bytes encoding/json writes as they are with
// HTML escaping on (json.Marshal's default, which lager uses).
var safeASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

// AppendStringBody appends s without its quotes, escaped as encoding/json
// does: \" \\ \b \f \n \r \t, other control bytes and < > & as \u00XX,
// invalid UTF-8 as \ufffd, and U+2028 and U+2029 as \u2028 and \u2029.
func AppendStringBody(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safeASCII[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(dst, s[start:]...)
}

// Package protoconflict lets a test binary link the cf CLI v6 plugin RPC
// server, whose dependencies go-loggregator v7 and go-log-cache both
// register a protobuf file named "egress.proto": protobuf-go panics on such
// conflicts unless GOLANG_PROTOBUF_REGISTRATION_CONFLICT says otherwise,
// and it reads that variable when the conflict happens. Import it blank:
// its init runs before the conflicting registrations, because those
// packages depend on google.golang.org/protobuf, whose import path sorts
// after this one (the spec's package initialization order). The tests
// never use those protobuf types.
package protoconflict

import "os"

func init() {
	if os.Getenv("GOLANG_PROTOBUF_REGISTRATION_CONFLICT") == "" {
		_ = os.Setenv("GOLANG_PROTOBUF_REGISTRATION_CONFLICT", "ignore")
	}
}

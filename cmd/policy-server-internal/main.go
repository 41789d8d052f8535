// Command policy-server-internal serves the policy server's internal API
// (policies with tags, tags, security groups) to cells over mutual TLS.
package main

import (
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/policyserver/internalapi"
)

func main() {
	lifecycle.Main(lifecycle.Command[internalapi.Config]{
		Name:        internalapi.Component,
		ConfigFlag:  "config-file",
		ConfigUsage: "path to config file",
		Load:        internalapi.LoadConfig,
		Log:         func(c internalapi.Config) (string, string) { return c.LogPrefix, c.LogLevel },
		Stderr:      "{prefix}.{name}",
		ConfigError: "could not read config file: ",
		Exited:      true,
		Run:         internalapi.Run,
	})
}

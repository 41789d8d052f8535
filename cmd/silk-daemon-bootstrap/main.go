// Command silk-daemon-bootstrap is silk-daemon's pre-start step on
// single_ip_only VMs: it gets the ingress router tag from
// policy-server-internal and marks the VM's overlay traffic with it
// (package bootstrap).
package main

import (
	"context"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/agent"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/silk/bootstrap"
)

// clientTimeout bounds the request to the policy server, as upstream.
const clientTimeout = 5 * time.Second

func main() {
	lifecycle.Main(lifecycle.Command[bootstrap.Config]{
		Name:        "silk-daemon-bootstrap",
		ConfigFlag:  "config",
		ConfigUsage: "path to config file",
		Load:        bootstrap.LoadConfig,
		Run:         run,
	})
}

func run(ctx context.Context, logger lager.Logger, _ *lager.ReconfigurableSink, cfg bootstrap.Config) error {
	var client bootstrap.Tagger
	if cfg.SingleIPOnly {
		tlsConfig, err := mtls.ClientConfig(cfg.PolicyClientCertFile, cfg.PolicyClientKeyFile, cfg.PolicyServerCACertFile)
		if err != nil {
			return err
		}
		client = agent.NewClient(cfg.PolicyServerURL, tlsConfig, clientTimeout)
	}
	ipt := iptables.New(iptables.Config{LockFile: cfg.IPTablesLockFile})
	return bootstrap.Run(ctx, logger.Session("bootstrap"), cfg, client, ipt)
}

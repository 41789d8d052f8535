// Command silk-daemon-bootstrap is silk-daemon's pre-start step on
// single_ip_only VMs: it gets the ingress router tag from
// policy-server-internal and marks the VM's overlay traffic with it
// (package bootstrap).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/netman-release/netman/src/agent"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/silk/bootstrap"
)

// clientTimeout bounds the request to the policy server, as upstream.
const clientTimeout = 5 * time.Second

func main() {
	configPath := flag.String("config", "", "path to config file")
	flag.Parse()
	if err := run(*configPath); err != nil {
		fmt.Fprintf(os.Stderr, "silk-daemon-bootstrap: %s\n", err)
		os.Exit(1)
	}
}

func run(configPath string) error {
	cfg, err := bootstrap.LoadConfig(configPath)
	if err != nil {
		return err
	}
	logger, _, err := logging.New(logging.DefaultPrefix, "silk-daemon-bootstrap", "info", os.Stdout)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
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

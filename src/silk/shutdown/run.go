// Package shutdown is silk-daemon-shutdown, the first half of silk-daemon's
// BOSH drain: wait (bounded) for the cell's containers to be gone from the
// container metadata store, stop silk-daemon and wait until its port stops
// answering, then remove the single-IP ingress chain (package bootstrap).
// silk-teardown then releases the lease and deletes the VTEP.
package shutdown

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/silk/bootstrap"
)

// Config holds the flags (upstream's names in the comments).
type Config struct {
	MetadataFile  string        // containerMetadataFile
	CheckInterval time.Duration // containerMetadataFileCheckInterval
	CheckTimeout  time.Duration // containerMetadataFileCheckTimeout
	DaemonURL     string        // silkDaemonUrl
	DaemonTimeout time.Duration // silkDaemonTimeout: the wait between pings
	DaemonPidFile string        // silkDaemonPidPath
	PingTimeout   time.Duration // pingServerTimeout: bounds the whole ping wait
}

// PingAttempts is how many times the daemon is pinged after SIGTERM before
// the drain gives up on it, as upstream.
const PingAttempts = 5

// Store is the container metadata store.
type Store interface {
	ReadAll(ctx context.Context) (map[string]metadata.Container, error)
}

// Run is the shutdown. A daemon that is not running (no pid file, or a
// stale one) counts as stopped. A missing metadata directory fails the
// shutdown, as upstream, but only after the daemon is stopped and the chain
// removed: the drain goes on to silk-teardown either way.
func Run(ctx context.Context, logger lager.Logger, cfg Config, store Store, ipt bootstrap.Table) error {
	_, noStore := os.Stat(filepath.Dir(cfg.MetadataFile))
	if noStore != nil {
		logger.Error("container-metadata-directory", noStore)
	} else if n := waitForEmptyStore(ctx, logger, cfg, store); n != 0 {
		logger.Info("containers-remain", lager.Data{"file": cfg.MetadataFile, "containers": n, "timeout": cfg.CheckTimeout.String()})
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := stopDaemon(logger, cfg.DaemonPidFile); err != nil {
		return err
	}
	up, err := waitForExit(ctx, logger, cfg)
	if err != nil {
		return err
	}
	if up {
		return fmt.Errorf("Silk Daemon Server did not exit after %d ping attempts", PingAttempts)
	}
	if err := bootstrap.Remove(ctx, ipt); err != nil {
		return err
	}
	logger.Info("done")
	return noStore
}

// waitForEmptyStore reads the store every CheckInterval, at most
// CheckTimeout/CheckInterval times, until it has no container. It returns
// how many containers were left (-1 when the store could not be read).
func waitForEmptyStore(ctx context.Context, logger lager.Logger, cfg Config, store Store) int {
	attempts := 1
	if cfg.CheckInterval > 0 {
		attempts = max(1, int(cfg.CheckTimeout/cfg.CheckInterval))
	}
	left := -1
	for i := 0; i < attempts; i++ {
		all, err := store.ReadAll(ctx)
		switch {
		case err != nil:
			left = -1
			logger.Info("read-container-metadata-failed", lager.Data{"file": cfg.MetadataFile, "error": err.Error()})
		case len(all) == 0:
			logger.Info("no-containers-left", lager.Data{"file": cfg.MetadataFile})
			return 0
		default:
			left = len(all)
			logger.Info("waiting-for-containers", lager.Data{"containers": left})
		}
		if i == attempts-1 || !lifecycle.Sleep(ctx, cfg.CheckInterval) {
			break
		}
	}
	return left
}

// stopDaemon sends SIGTERM to the pid in pidFile.
func stopDaemon(logger lager.Logger, pidFile string) error {
	data, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		logger.Info("silk-daemon-not-running", lager.Data{"pid_file": pidFile})
		return nil
	}
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("pid file %s: %q is not a pid", pidFile, strings.TrimSpace(string(data)))
	}
	logger.Info("sending-sigterm", lager.Data{"pid": pid})
	if err := syscall.Kill(pid, syscall.SIGTERM); errors.Is(err, syscall.ESRCH) {
		logger.Info("silk-daemon-not-running", lager.Data{"pid": pid})
	} else if err != nil {
		return fmt.Errorf("signal silk-daemon (pid %d): %w", pid, err)
	}
	return nil
}

// waitForExit pings the daemon every DaemonTimeout, at most PingAttempts
// times and for at most PingTimeout in all, until it stops answering. It
// reports whether the daemon was still up.
func waitForExit(ctx context.Context, logger lager.Logger, cfg Config) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.DaemonURL, nil)
	if err != nil {
		return true, err
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(cfg.PingTimeout)
	for i := 0; i < PingAttempts; i++ {
		if !lifecycle.Sleep(ctx, cfg.DaemonTimeout) {
			return true, ctx.Err()
		}
		if cfg.PingTimeout > 0 && time.Now().After(deadline) {
			return true, nil
		}
		if !answers(client, req) {
			logger.Info("silk-daemon-stopped", lager.Data{"url": cfg.DaemonURL})
			return false, nil
		}
		logger.Info("waiting-for-silk-daemon-to-exit", lager.Data{"url": cfg.DaemonURL, "attempt": i + 1})
	}
	return true, nil
}

// answers is upstream's test of a daemon still up: a 2xx (200-206) answer,
// or a timeout.
func answers(client *http.Client, req *http.Request) bool {
	resp, err := client.Do(req)
	if err != nil {
		var ne net.Error
		return errors.As(err, &ne) && ne.Timeout()
	}
	defer resp.Body.Close()
	return resp.StatusCode >= http.StatusOK && resp.StatusCode <= http.StatusPartialContent
}

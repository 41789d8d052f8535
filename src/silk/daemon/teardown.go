package daemon

import (
	"context"
	"errors"
	"fmt"

	"code.cloudfoundry.org/lager/v3"
)

// Releaser is the part of the silk-controller client silk-teardown uses.
type Releaser interface {
	Release(ctx context.Context, underlayIP string) error
}

// Teardown is silk-teardown (BOSH pre-start and drain): release the cell's
// lease and delete the VTEP. Both are attempted; the failures are joined.
// With a nil nl it uses the process's own namespace; with a nil client it
// builds the mTLS client from cfg with no timeout, as upstream.
func Teardown(ctx context.Context, logger lager.Logger, cfg Config, nl Links, client Releaser) error {
	logger.Info("starting")
	if client == nil {
		c, err := NewControllerClient(cfg, 0)
		if err != nil {
			return err
		}
		client = c
	}
	if nl == nil {
		sys, err := OpenSystem("")
		if err != nil {
			return err
		}
		defer sys.Close()
		nl = sys
	}

	var errs []error
	if err := client.Release(ctx, cfg.UnderlayIP); err != nil {
		errs = append(errs, fmt.Errorf("release subnet lease: %w", err))
	}
	if err := DeleteVTEP(nl, cfg.VTEPName); err != nil {
		errs = append(errs, fmt.Errorf("delete vtep: %w", err))
	}
	logger.Info("complete", lager.Data{"failures": len(errs)})
	return errors.Join(errs...)
}

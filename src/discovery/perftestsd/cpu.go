package perftestsd

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// CPUTolerance is how many percentage points NATS's CPU may differ between
// router.register traffic alone and router.register plus
// service-discovery.register traffic, for the median and for the mean.
const CPUTolerance = 30.0

// CPUStats summarizes /varz CPU samples (percent of one core).
type CPUStats struct {
	Median, Mean float64
	Samples      int
}

func cpuStats(samples []float64) (CPUStats, error) {
	if len(samples) == 0 {
		return CPUStats{}, errors.New("no CPU samples")
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	median := s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return CPUStats{Median: median, Mean: sum / float64(len(s)), Samples: len(s)}, nil
}

// CPUComparison is the outcome of CompareCPU.
type CPUComparison struct {
	RouterOnly, Both CPUStats
}

// CompareCPU compares NATS's CPU samples taken while only router.register
// was published with those taken while service-discovery.register was
// published as well: the medians, and the means, must be within tolerance
// percentage points of each other.
func CompareCPU(routerOnly, both []float64, tolerance float64) (CPUComparison, error) {
	var c CPUComparison
	var err error
	if c.RouterOnly, err = cpuStats(routerOnly); err != nil {
		return c, fmt.Errorf("router.register alone: %w", err)
	}
	if c.Both, err = cpuStats(both); err != nil {
		return c, fmt.Errorf("router.register and service-discovery.register: %w", err)
	}
	var errs []error
	check := func(what string, alone, with float64) {
		if math.Abs(with-alone) > tolerance {
			errs = append(errs, fmt.Errorf("NATS CPU %s is %.1f%% with service-discovery.register and %.1f%% with router.register alone: more than %.0f points apart",
				what, with, alone, tolerance))
		}
	}
	check("median", c.RouterOnly.Median, c.Both.Median)
	check("mean", c.RouterOnly.Mean, c.Both.Mean)
	return c, errors.Join(errs...)
}

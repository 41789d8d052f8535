package lab

import (
	"fmt"
	"strconv"
	"strings"
)

// The limits the command line is held to (scripts/lab checks the same
// before it builds anything).
const (
	MinCells, MaxCells = 1, 200
	MinApps, MaxApps   = 2, 200
)

// UpArgs is `netman-lab up`'s command line.
type UpArgs struct {
	Options
	Keep bool
	Help bool
}

// ParseUpArgs reads `up`'s options (--name value, --name=value, one dash or
// two) and checks every value, so that a mistake is one line naming it.
// Unlike Options, whose zero values mean the defaults, a count given here
// is the count: --cells 0 is an error.
func ParseUpArgs(args []string) (UpArgs, error) {
	a := UpArgs{Options: Options{Dir: ".lab", Bins: "bin", Cells: 2, Apps: 2, DB: DBSQLite, Backend: BackendIPTables, Underlay: "10.244.0."}}
	for len(args) > 0 {
		arg := args[0]
		args = args[1:]
		name, value, inline := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if !strings.HasPrefix(arg, "-") {
			return a, fmt.Errorf("unexpected argument %q", arg)
		}
		switch name {
		case "keep", "h", "help", "ipv6":
			if inline {
				return a, fmt.Errorf("--%s takes no value", name)
			}
			a.Keep = a.Keep || name == "keep"
			a.IPv6 = a.IPv6 || name == "ipv6"
			a.Help = a.Help || (name != "keep" && name != "ipv6")
			continue
		}
		want, ok := upValues[name]
		if !ok {
			return a, fmt.Errorf("unknown option %s", arg)
		}
		if !inline {
			if len(args) == 0 {
				return a, fmt.Errorf("--%s needs %s", name, want)
			}
			value, args = args[0], args[1:]
		}
		if value == "" {
			return a, fmt.Errorf("--%s needs %s", name, want)
		}
		var err error
		switch name {
		case "cells":
			a.Cells, err = count(name, value, MinCells, MaxCells)
		case "apps":
			a.Apps, err = count(name, value, MinApps, MaxApps)
		case "db":
			if a.DB = value; value != DBSQLite && value != DBPostgres && value != DBMySQL {
				err = fmt.Errorf("--db %s: want %s", value, want)
			}
		case "backend":
			if a.Backend = value; value != BackendIPTables && value != BackendNFTables {
				err = fmt.Errorf("--backend %s: want %s", value, want)
			}
		case "underlay":
			if a.Underlay = value; !validUnderlay.MatchString(value) {
				err = fmt.Errorf("--underlay %s: want %s", value, want)
			}
		case "dir":
			a.Dir = value
		case "bin":
			a.Bins = value
		}
		if err != nil {
			return a, err
		}
	}
	return a, nil
}

// upValues is what each of up's options with a value wants.
var upValues = map[string]string{
	"cells":    fmt.Sprintf("a number from %d to %d", MinCells, MaxCells),
	"apps":     fmt.Sprintf("a number from %d to %d", MinApps, MaxApps),
	"db":       "sqlite, postgres or mysql",
	"backend":  "iptables or nftables",
	"underlay": "the first three octets of a /24 and a dot (10.244.0.)",
	"dir":      "a directory",
	"bin":      "a directory",
}

func count(name, value string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(value)
	if strings.Trim(value, "0123456789") != "" || err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("--%s %s: want a number from %d to %d", name, value, lo, hi)
	}
	return n, nil
}

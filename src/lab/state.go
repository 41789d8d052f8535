package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/netman-release/netman/src/sqldb"
)

// StateFile is the lab's ledger inside its directory.
const StateFile = "state.json"

// State is a lab as it was made: what runs where, and the ledger of every
// kernel object, process and database it created, in creation order, so
// that `down` (any later process) undoes exactly that, newest first.
type State struct {
	Dir    string      `json:"dir"`
	Bins   string      `json:"bins"`
	Names  string      `json:"names"` // prefix of every namespace, link and database name
	DB     string      `json:"db"`
	Plan   Plan        `json:"plan"`
	Token  string      `json:"-"` // the admin token; in env and tokens.json (0600), not here (0644: status runs unprivileged)
	Bridge string      `json:"bridge"`
	Cells  []CellState `json:"cells"`
	Apps   []AppState  `json:"apps"`
	// Egress is the frontend's second caller, to a service outside the
	// overlay that only an application security group lets it reach.
	Egress *EgressState `json:"egress,omitempty"`
	// IPv6 is a dual-stack lab's (--ipv6) callers over IPv6.
	IPv6    *IPv6State `json:"ipv6,omitempty"`
	Started time.Time  `json:"started"`
	Undo    []Resource `json:"undo"`
}

// CellState is one cell.
type CellState struct {
	Index      int    `json:"index"`
	NS         string `json:"ns"`
	UnderlayIP string `json:"underlay_ip"`
	// UnderlayIP6 is its IPv6 underlay address (--ipv6).
	UnderlayIP6 string `json:"underlay_ip6,omitempty"`
	Subnet      string `json:"overlay_subnet"`
	Dir         string `json:"dir"`
}

// AppState is one app container.
type AppState struct {
	Name     string    `json:"name"`
	GUID     string    `json:"guid"`
	Handle   string    `json:"handle"` // Garden's container handle
	Cell     int       `json:"cell"`
	NS       string    `json:"ns"`
	IP       string    `json:"ip"`
	IP6      string    `json:"ip6,omitempty"` // on a dual-stack lab (--ipv6)
	Port     int       `json:"port"`
	HostPort int       `json:"host_port"` // the cell's port mapped to Port
	PID      int       `json:"pid"`
	Log      string    `json:"log"`
	Calls    string    `json:"calls,omitempty"` // the URL a caller app calls
	UpAt     time.Time `json:"up_at"`           // when its network was up
	// Route is its internal route (<name>.apps.internal); DNSServers what
	// garden-external-networker gave it as dns_servers.
	Route      string   `json:"route"`
	DNSServers []string `json:"dns_servers"`
	Space      string   `json:"space,omitempty"` // its space guid (security groups bind to spaces)
}

// EgressState is the ASG demo's pair: a service outside the overlay (in
// the root namespace, on the underlay) and a caller inside the frontend's
// container calling it.
type EgressState struct {
	Service string `json:"service"` // host:port of the outside service
	Caller
}

// Caller is a calling app beside a container's own (in the frontend's
// container): what it calls and where its call lines go.
type Caller struct {
	Calls string    `json:"calls"` // the URL the caller calls
	Log   string    `json:"log"`   // the caller's call lines
	UpAt  time.Time `json:"up_at"`
}

// IPv6State is a dual-stack lab's IPv6 demo pair of callers in the
// frontend's container: C2C calls the backend's IPv6 address, Egress the
// outside service on the underlay's IPv6 address.
type IPv6State struct {
	C2C    Caller       `json:"c2c"`
	Egress *EgressState `json:"egress,omitempty"`
}

// Resource kinds, undone by Down.
const (
	KindDatabase  = "database"  // Name; DB is its `database` object
	KindLink      = "link"      // Name, in the root namespace
	KindNetns     = "netns"     // Name
	KindProc      = "proc"      // Proc
	KindContainer = "container" // Name is the handle; NS the cell; Config the adapter.json
	KindFile      = "file"      // Name: a file, or a directory removed when empty, outside the lab's dir
	KindSysctl    = "sysctl"    // Name: a /proc/sys file of the root namespace; Config the value it had
)

// Resource is one thing the lab made.
type Resource struct {
	Kind   string       `json:"kind"`
	Name   string       `json:"name,omitempty"`
	Proc   *Proc        `json:"proc,omitempty"`
	NS     string       `json:"ns,omitempty"`
	Config string       `json:"config,omitempty"`
	DB     sqldb.Config `json:"db,omitzero"`
}

// Made records r in the ledger and saves the state, before anything else
// can fail.
func (s *State) Made(r Resource) error {
	s.Undo = append(s.Undo, r)
	return s.Save()
}

// Save writes the state atomically.
func (s *State) Save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.Dir, StateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.Dir, StateFile))
}

// ErrNotRunning is Load's answer when dir holds no lab.
var ErrNotRunning = errors.New("the lab is not running")

// Load reads the state of the lab in dir.
func Load(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotRunning
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, StateFile), err)
	}
	return &s, nil
}

// App is the app called name, or nil.
func (s *State) App(name string) *AppState {
	for i := range s.Apps {
		if s.Apps[i].Name == name {
			return &s.Apps[i]
		}
	}
	return nil
}

// Procs are the processes in the ledger.
func (s *State) Procs() []*Proc {
	var out []*Proc
	for _, r := range s.Undo {
		if r.Kind == KindProc && r.Proc != nil {
			out = append(out, r.Proc)
		}
	}
	return out
}

package release

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// ErrNoRuby is returned when the ruby interpreter is not installed.
var ErrNoRuby = errors.New("ruby is not installed (Debian: apt-get install ruby)")

// Deployment is the part of a BOSH deployment manifest the renderer needs.
type Deployment struct {
	Name           string          `json:"name"`
	InstanceGroups []InstanceGroup `json:"instance_groups"`
	// ExternalLinks stand for links provided by other releases or
	// deployments (database, nats-tls, iptables, ...), keyed by link type.
	ExternalLinks map[string]Link `json:"external_links,omitempty"`
}

// InstanceGroup is an instance group with its instances and jobs.
type InstanceGroup struct {
	Name      string     `json:"name"`
	Instances []Instance `json:"instances"`
	Jobs      []Job      `json:"jobs"`
}

// Instance is one VM of an instance group.
type Instance struct {
	Index     int                `json:"index"`
	ID        string             `json:"id"`
	AZ        string             `json:"az"`
	Bootstrap bool               `json:"bootstrap"`
	Networks  map[string]Network `json:"networks"`
}

// Network is an instance's address on one BOSH network; Default lists what
// the network is the default for ("dns", "gateway").
type Network struct {
	IP      string   `json:"ip"`
	Default []string `json:"default,omitempty"`
}

// Job is a job of an instance group: its manifest properties and, per
// consumed link, nil to block it or {"from": "<provided link name>"}.
type Job struct {
	Name       string         `json:"name"`
	Properties map[string]any `json:"properties,omitempty"`
	Consumes   map[string]any `json:"consumes,omitempty"`
}

// Link is what an external provider offers.
type Link struct {
	Address    string         `json:"address,omitempty"`
	Properties map[string]any `json:"properties,omitempty"`
	Instances  []LinkInstance `json:"instances,omitempty"`
}

// LinkInstance is one instance behind a link.
type LinkInstance struct {
	Name      string `json:"name,omitempty"`
	Index     int    `json:"index"`
	ID        string `json:"id,omitempty"`
	AZ        string `json:"az,omitempty"`
	Address   string `json:"address"`
	Bootstrap bool   `json:"bootstrap,omitempty"`
}

// Target names a job to render.
type Target struct {
	InstanceGroup string `json:"instance_group"`
	Job           string `json:"job"`
}

// Result is what one rendering produced.
type Result struct {
	Rendered []Rendered     `json:"rendered"`
	Errors   []RenderFailed `json:"errors"`
}

// Rendered is one rendered template.
type Rendered struct {
	InstanceGroup string `json:"instance_group"`
	Job           string `json:"job"`
	Template      string `json:"template"`
	Dest          string `json:"dest"`
	// Path is where the file was written: <out>/<instance group>/<job>/<dest>.
	Path string `json:"path"`
	// YAML is the parsed content of a *.yml destination.
	YAML      any    `json:"yaml,omitempty"`
	YAMLError string `json:"yaml_error,omitempty"`
}

// RenderFailed is a template (or a whole job, Template "") that could not be
// rendered, with the director's kind of message.
type RenderFailed struct {
	InstanceGroup string `json:"instance_group"`
	Job           string `json:"job"`
	Template      string `json:"template"`
	Message       string `json:"message"`
}

func (f RenderFailed) String() string {
	return fmt.Sprintf("%s/%s %s: %s", f.InstanceGroup, f.Job, f.Template, f.Message)
}

// Script is the path of render.rb.
func Script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "render.rb")
}

// Render renders the targets (every job when none) of d with the jobs in
// releaseDir/jobs, writing files under outDir.
func Render(releaseDir, outDir string, d Deployment, targets ...Target) (Result, error) {
	ruby, err := exec.LookPath("ruby")
	if err != nil {
		return Result{}, ErrNoRuby
	}
	input := map[string]any{"release_dir": releaseDir, "out_dir": outDir, "deployment": d}
	if len(targets) > 0 {
		input["render"] = targets
	}
	data, err := json.Marshal(input)
	if err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return Result{}, err
	}
	in := filepath.Join(outDir, "input.json")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		return Result{}, err
	}
	var stderr bytes.Buffer
	cmd := exec.Command(ruby, Script(), in)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("render.rb: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	out, err := os.ReadFile(filepath.Join(outDir, "result.json"))
	if err != nil {
		return Result{}, err
	}
	var r Result
	if err := json.Unmarshal(out, &r); err != nil {
		return Result{}, fmt.Errorf("render.rb result: %w", err)
	}
	return r, nil
}

// Specs returns the job and package specs of releaseDir as parsed by Ruby's
// YAML (there is no YAML parser in the module): {"jobs": {...}, "packages": {...}}.
func Specs(releaseDir string) (jobs, packages map[string]map[string]any, err error) {
	ruby, err := exec.LookPath("ruby")
	if err != nil {
		return nil, nil, ErrNoRuby
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(ruby, Script(), "--specs", releaseDir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, nil, fmt.Errorf("render.rb --specs: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var all struct {
		Jobs     map[string]map[string]any `json:"jobs"`
		Packages map[string]map[string]any `json:"packages"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &all); err != nil {
		return nil, nil, err
	}
	return all.Jobs, all.Packages, nil
}

// YAMLFile returns a YAML file (a manifest, an ops-file) decoded by Ruby's
// YAML into generic JSON values.
func YAMLFile(path string) (any, error) {
	ruby, err := exec.LookPath("ruby")
	if err != nil {
		return nil, ErrNoRuby
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(ruby, Script(), "--yaml", path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("render.rb --yaml: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var v any
	if err := json.Unmarshal(stdout.Bytes(), &v); err != nil {
		return nil, err
	}
	return v, nil
}

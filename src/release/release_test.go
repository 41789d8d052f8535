package release

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

func specs(t *testing.T) (jobs, packages map[string]map[string]any) {
	t.Helper()
	requireRuby(t)
	jobs, packages, err := Specs(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	return jobs, packages
}

func stringList(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestJobLayout checks each job directory against its spec: the name, the
// monit file, every template file listed and every listed file present,
// the packages, the links and a description for every property.
func TestJobLayout(t *testing.T) {
	root := repoRoot(t)
	jobs, packages := specs(t)
	if len(jobs) == 0 {
		t.Fatal("no jobs")
	}
	for name, spec := range jobs {
		dir := filepath.Join(root, "jobs", name)
		if spec["name"] != name {
			t.Errorf("jobs/%s/spec: name is %v", name, spec["name"])
		}
		if _, err := os.Stat(filepath.Join(dir, "monit")); err != nil {
			t.Errorf("jobs/%s: no monit file", name)
		}
		templates, _ := spec["templates"].(map[string]any)
		var listed []string
		dests := map[string]string{}
		for src, dest := range templates {
			listed = append(listed, src)
			if other, dup := dests[dest.(string)]; dup {
				t.Errorf("jobs/%s: %s and %s both render to %s", name, src, other, dest)
			}
			dests[dest.(string)] = src
		}
		present := listDir(t, filepath.Join(dir, "templates"))
		sort.Strings(listed)
		sort.Strings(present)
		for _, f := range present {
			if !slices.Contains(listed, f) {
				t.Errorf("jobs/%s/templates/%s is not in the spec's templates", name, f)
			}
		}
		for _, f := range listed {
			if !slices.Contains(present, f) {
				t.Errorf("jobs/%s/spec lists template %s, which does not exist", name, f)
			}
		}
		pkgs := stringList(spec["packages"])
		if len(pkgs) == 0 {
			t.Errorf("jobs/%s: no packages", name)
		}
		for _, p := range pkgs {
			if _, ok := packages[p]; !ok {
				t.Errorf("jobs/%s uses package %s, which does not exist", name, p)
			}
		}
		props, _ := spec["properties"].(map[string]any)
		for prop, decl := range props {
			d, _ := decl.(map[string]any)
			if desc, _ := d["description"].(string); strings.TrimSpace(desc) == "" {
				t.Errorf("jobs/%s: property %s has no description", name, prop)
			}
		}
		for _, kind := range []string{"provides", "consumes"} {
			list, _ := spec[kind].([]any)
			for _, l := range list {
				m, _ := l.(map[string]any)
				if m["name"] == nil || m["type"] == nil {
					t.Errorf("jobs/%s: %s entry without name or type: %v", name, kind, m)
				}
			}
		}
	}
}

// TestUpstreamSurface checks that every job upstream has is here (but the
// pending ones), with every upstream property at upstream's default and
// upstream's links: a renamed property or link fails here.
func TestUpstreamSurface(t *testing.T) {
	jobs, _ := specs(t)
	for name, up := range upstreamJobs {
		spec, ok := jobs[name]
		if !ok {
			t.Errorf("upstream's job %s is missing", name)
			continue
		}
		props, _ := spec["properties"].(map[string]any)
		for prop, want := range up.properties {
			decl, ok := props[prop]
			if !ok {
				t.Errorf("%s: upstream's property %s is missing", name, prop)
				continue
			}
			d, _ := decl.(map[string]any)
			got, hasDefault := d["default"]
			switch want {
			case anyDefault:
			case noDefault:
				if hasDefault && got != nil {
					t.Errorf("%s: %s has default %v; upstream's has none", name, prop, got)
				}
			default:
				if !sameJSON(t, got, want) {
					t.Errorf("%s: %s defaults to %v; upstream's default is %v", name, prop, got, want)
				}
			}
		}
		checkLinks(t, name, "provides", spec["provides"], up.provides)
		checkLinks(t, name, "consumes", spec["consumes"], up.consumes)
	}
	for name := range jobs {
		if _, ok := upstreamJobs[name]; !ok {
			t.Errorf("job %s is not one of upstream's jobs", name)
		}
	}
	for _, name := range pendingJobs {
		if _, ok := jobs[name]; ok {
			t.Errorf("job %s exists: move it from pendingJobs to upstreamJobs", name)
		}
	}
}

func checkLinks(t *testing.T, job, kind string, got any, want map[string]upstreamLink) {
	t.Helper()
	list, _ := got.([]any)
	have := map[string]map[string]any{}
	for _, l := range list {
		m, _ := l.(map[string]any)
		n, _ := m["name"].(string)
		have[n] = m
	}
	for name, w := range want {
		h, ok := have[name]
		if !ok {
			t.Errorf("%s: upstream's %s link %s is missing", job, kind, name)
			continue
		}
		if h["type"] != w.typ {
			t.Errorf("%s: %s link %s has type %v, upstream's %s", job, kind, name, h["type"], w.typ)
		}
		if opt, _ := h["optional"].(bool); opt != w.optional && kind == "consumes" && !opt {
			t.Errorf("%s: consumed link %s is required; upstream's is optional", job, name)
		}
		props := stringList(h["properties"])
		for _, p := range w.properties {
			if !slices.Contains(props, p) {
				t.Errorf("%s: provided link %s lacks upstream's property %s", job, name, p)
			}
		}
	}
	for name := range have {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: %s link %s is not upstream's", job, kind, name)
		}
	}
}

func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}

// goBuildTargets reads the packages a packaging script builds: ./cmd/<name>
// and full import paths on the lines after "go build".
var buildTarget = regexp.MustCompile(`(?m)^\s+(\./cmd/[a-z0-9-]+|[a-z0-9.-]+\.[a-z]+/\S+?)\s*(\\)?$`)

func goBuildTargets(t *testing.T, pkg string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "packages", pkg, "packaging"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range buildTarget.FindAllStringSubmatch(string(data), -1) {
		out = append(out, m[1])
	}
	return out
}

// binaries is what a package installs in bin/.
func binaries(t *testing.T, pkg string) []string {
	t.Helper()
	var out []string
	for _, target := range goBuildTargets(t, pkg) {
		out = append(out, target[strings.LastIndex(target, "/")+1:])
	}
	return out
}

// TestPackageLayout checks every package: name, dependencies, a packaging
// script that builds commands that exist, and the Go package first.
func TestPackageLayout(t *testing.T) {
	root := repoRoot(t)
	_, packages := specs(t)
	if _, ok := packages[golangPackage]; !ok {
		t.Fatalf("no %s package", golangPackage)
	}
	for name, spec := range packages {
		if spec["name"] != name {
			t.Errorf("packages/%s/spec: name is %v", name, spec["name"])
		}
		if len(stringList(spec["files"])) == 0 {
			t.Errorf("packages/%s: no files", name)
		}
		if _, err := os.Stat(filepath.Join(root, "packages", name, "packaging")); err != nil {
			t.Errorf("packages/%s: no packaging script", name)
			continue
		}
		for _, dep := range stringList(spec["dependencies"]) {
			if _, ok := packages[dep]; !ok {
				t.Errorf("packages/%s depends on %s, which does not exist", name, dep)
			}
		}
		if name == golangPackage {
			continue
		}
		if !slices.Contains(stringList(spec["dependencies"]), golangPackage) {
			t.Errorf("packages/%s does not depend on %s", name, golangPackage)
		}
		targets := goBuildTargets(t, name)
		if len(targets) == 0 {
			t.Errorf("packages/%s/packaging builds nothing", name)
		}
		for _, target := range targets {
			if strings.HasPrefix(target, "./cmd/") {
				if _, err := os.Stat(filepath.Join(root, target)); err != nil {
					t.Errorf("packages/%s builds %s, which does not exist", name, target)
				}
			}
		}
	}
}

// packageBinary matches a packaged binary named in a rendered file.
var packageBinary = regexp.MustCompile(`/var/vcap/packages/([a-z0-9-]+)/bin/([a-z0-9-]+)`)

// TestJobsRunTheirPackages checks what the rendered jobs run: every
// /var/vcap/packages/<pkg>/bin/<binary> is built by <pkg>, a package of the
// job; every BPM process has its monit check; the flags BPM passes exist in
// the command.
func TestJobsRunTheirPackages(t *testing.T) {
	root := repoRoot(t)
	jobs, packages := specs(t)
	r := mustRender(t, cfDeployment(t))
	monits := map[string]string{}
	for _, f := range r.result.Rendered {
		if f.Dest == "monit" {
			monits[f.Job] = string(readFile(t, f.Path))
		}
	}
	for _, f := range r.result.Rendered {
		data := string(readFile(t, f.Path))
		for _, m := range packageBinary.FindAllStringSubmatch(data, -1) {
			pkg, bin := m[1], m[2]
			if _, ok := packages[pkg]; !ok {
				t.Errorf("%s/%s runs %s: no package %s", f.Job, f.Dest, m[0], pkg)
				continue
			}
			if !slices.Contains(stringList(jobs[f.Job]["packages"]), pkg) {
				t.Errorf("%s/%s runs %s, but %s is not a package of the job", f.Job, f.Dest, m[0], pkg)
			}
			if !slices.Contains(binaries(t, pkg), bin) {
				t.Errorf("%s/%s runs %s, which package %s does not build", f.Job, f.Dest, m[0], pkg)
			}
		}
		if f.Dest != "config/bpm.yml" {
			continue
		}
		doc, _ := f.YAML.(map[string]any)
		procs, _ := doc["processes"].([]any)
		if len(procs) == 0 {
			t.Errorf("%s: bpm.yml has no processes", f.Job)
		}
		for _, p := range procs {
			proc, _ := p.(map[string]any)
			name, _ := proc["name"].(string)
			exe, _ := proc["executable"].(string)
			if strings.HasPrefix(exe, "/var/vcap/jobs/"+f.Job+"/bin/bbr/") {
				// A BBR script that runs itself under `bpm run`: one-shot,
				// not monit's; what it runs is checked as a rendered file.
				continue
			}
			pidfile := "/var/vcap/sys/run/bpm/" + f.Job + "/" + name + ".pid"
			if !strings.Contains(monits[f.Job], pidfile) {
				t.Errorf("%s: monit does not check BPM process %s (%s)", f.Job, name, pidfile)
			}
			args := stringList(proc["args"])
			if start := "/var/vcap/jobs/" + f.Job + "/bin/start"; exe == start {
				// A start script execs the binary with the flags.
				script := string(readFile(t, r.file(t, f.Job, "bin/start").Path))
				m := regexp.MustCompile(`(?m)^exec (\S+)((?:\\\n|.)*)$`).FindStringSubmatch(script)
				if m == nil {
					t.Errorf("%s: bin/start does not exec a binary", f.Job)
					continue
				}
				exe = m[1]
				args = strings.Fields(strings.ReplaceAll(m[2], "\\\n", " "))
			}
			bin := packageBinary.FindStringSubmatch(exe)
			if bin == nil || bin[0] != exe {
				t.Errorf("%s: process %s runs %s, not a packaged binary", f.Job, name, exe)
				continue
			}
			main, err := os.ReadFile(filepath.Join(root, "cmd", bin[2], "main.go"))
			if err != nil {
				t.Errorf("%s: %v", f.Job, err)
				continue
			}
			for _, a := range args {
				flag := strings.TrimLeft(strings.SplitN(a, "=", 2)[0], "-")
				if !strings.Contains(string(main), `"`+flag+`"`) {
					t.Errorf("%s: BPM passes %s, but cmd/%s/main.go defines no flag %q", f.Job, a, bin[2], flag)
				}
			}
		}
	}
}

// TestNothingPendingExists keeps the list of pending jobs honest: once a
// binary for one of them exists, the job should be written.
func TestNothingPendingExists(t *testing.T) {
	for _, job := range pendingJobs {
		if _, err := os.Stat(filepath.Join(repoRoot(t), "cmd", job)); err == nil {
			t.Errorf("cmd/%s exists but the BOSH release has no %s job yet", job, job)
		}
	}
}

package release

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// applyOps applies a BOSH ops-file (the subset cf-deployment's use):
// replace and remove, map keys, name=<value> selectors in lists, "-" to
// append, and "?" for optional steps (created on replace, skipped on
// remove).
func applyOps(doc any, ops []any) (any, error) {
	for i, o := range ops {
		op, _ := o.(map[string]any)
		typ, _ := op["type"].(string)
		path, _ := op["path"].(string)
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("op %d: path %q does not start with /", i, path)
		}
		if typ != "replace" && typ != "remove" {
			return nil, fmt.Errorf("op %d: type %q is not supported", i, typ)
		}
		var err error
		doc, err = applyOp(doc, strings.Split(path[1:], "/"), typ, op["value"])
		if err != nil {
			return nil, fmt.Errorf("op %d (%s %s): %w", i, typ, path, err)
		}
	}
	return doc, nil
}

// removed marks a node to delete from its parent.
type removed struct{}

func applyOp(node any, tokens []string, typ string, value any) (any, error) {
	if len(tokens) == 0 {
		if typ == "remove" {
			return removed{}, nil
		}
		return value, nil
	}
	tok, optional := strings.CutSuffix(tokens[0], "?")
	last := len(tokens) == 1
	switch n := node.(type) {
	case map[string]any:
		child, ok := n[tok]
		if !ok {
			switch {
			case typ == "remove" && optional:
				return n, nil
			case !optional && !(last && typ == "replace"):
				return nil, fmt.Errorf("no key %q", tok)
			case !last && (tokens[1] == "-" || strings.Contains(tokens[1], "=")):
				child = []any{}
			case !last:
				child = map[string]any{}
			}
		}
		out, err := applyOp(child, tokens[1:], typ, value)
		if err != nil {
			return nil, err
		}
		if _, gone := out.(removed); gone {
			delete(n, tok)
		} else {
			n[tok] = out
		}
		return n, nil
	case []any:
		if tok == "-" {
			if !last || typ != "replace" {
				return nil, fmt.Errorf("- only appends")
			}
			return append(n, value), nil
		}
		idx := -1
		if key, want, ok := strings.Cut(tok, "="); ok {
			for i, e := range n {
				if m, _ := e.(map[string]any); m != nil && fmt.Sprint(m[key]) == want {
					idx = i
					break
				}
			}
			if idx < 0 {
				switch {
				case typ == "remove" && optional:
					return n, nil
				case !optional:
					return nil, fmt.Errorf("no element with %s", tok)
				}
				n = append(n, map[string]any{key: want})
				idx = len(n) - 1
			}
		} else {
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n) {
				return nil, fmt.Errorf("bad index %q", tok)
			}
			idx = i
		}
		out, err := applyOp(n[idx], tokens[1:], typ, value)
		if err != nil {
			return nil, err
		}
		if _, gone := out.(removed); gone {
			return slices.Delete(n, idx, idx+1), nil
		}
		n[idx] = out
		return n, nil
	default:
		return nil, fmt.Errorf("cannot step into %T with %q", node, tok)
	}
}

var variableRef = regexp.MustCompile(`\(\(([a-zA-Z0-9_.-]+)\)\)`)

// interpolate replaces ((variables)) as credhub would: certificates from
// testCerts (name, name.ca, name.certificate, name.private_key), anything
// else a made-up secret. A ((name.field)) that is not a known certificate
// fails, so a certificate the manifest needs is never silently faked.
func interpolate(t *testing.T, v any) any {
	t.Helper()
	certs := testCerts(t)
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = interpolate(t, e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = interpolate(t, e)
		}
		return x
	case string:
		if m := variableRef.FindStringSubmatch(x); m != nil && m[0] == x {
			name, field, hasField := strings.Cut(m[1], ".")
			cert, isCert := certs[name]
			switch {
			case isCert && hasField:
				val, ok := cert[field]
				if !ok {
					t.Fatalf("((%s)): certificate %s has no %s", m[1], name, field)
				}
				return val
			case isCert:
				out := map[string]any{}
				for k, val := range cert {
					out[k] = val
				}
				return out
			case hasField:
				t.Fatalf("((%s)): no certificate %s in the test's credhub", m[1], name)
			}
		}
		return variableRef.ReplaceAllStringFunc(x, func(ref string) string {
			return "secret-" + strings.Trim(ref, "()")
		})
	default:
		return v
	}
}

// toDeployment turns a manifest into the renderer's deployment, keeping
// the jobs of the netman release. Instance group i gets 10.0.<i>.10.
func toDeployment(t *testing.T, manifest any) Deployment {
	t.Helper()
	m, _ := manifest.(map[string]any)
	d := Deployment{Name: fmt.Sprint(m["name"])}
	igs, _ := m["instance_groups"].([]any)
	for i, e := range igs {
		ig, _ := e.(map[string]any)
		networks := map[string]Network{}
		nets, _ := ig["networks"].([]any)
		for j, ne := range nets {
			n, _ := ne.(map[string]any)
			net := Network{IP: fmt.Sprintf("10.%d.%d.10", j, i)}
			if j == 0 {
				net.Default = []string{"dns", "gateway"}
			}
			networks[fmt.Sprint(n["name"])] = net
		}
		group := InstanceGroup{
			Name: fmt.Sprint(ig["name"]),
			Instances: []Instance{{Index: 0, ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), AZ: "z1",
				Bootstrap: true, Networks: networks}},
		}
		jobs, _ := ig["jobs"].([]any)
		for _, je := range jobs {
			job, _ := je.(map[string]any)
			if job["release"] != "netman" {
				continue
			}
			props, _ := job["properties"].(map[string]any)
			consumes, _ := job["consumes"].(map[string]any)
			group.Jobs = append(group.Jobs, Job{Name: fmt.Sprint(job["name"]), Properties: props, Consumes: consumes})
		}
		if len(group.Jobs) > 0 {
			d.InstanceGroups = append(d.InstanceGroups, group)
		}
	}
	// What the rest of cf-deployment provides.
	d.ExternalLinks = cfDeployment(t).ExternalLinks
	return d
}

func yamlFile(t *testing.T, path string) any {
	t.Helper()
	requireRuby(t)
	v, err := YAMLFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// renderManifest renders every netman job of a manifest and checks every
// file, as TestRenderEveryTemplate does for the built-in manifest.
func renderManifest(t *testing.T, manifest any) rendering {
	t.Helper()
	d := toDeployment(t, interpolate(t, manifest))
	r := mustRender(t, d)
	rendered := map[string]bool{}
	for _, f := range r.result.Rendered {
		rendered[f.Job] = true
		checkSyntax(t, f)
	}
	for _, c := range configChecks() {
		if !rendered[c.job] {
			continue
		}
		f := r.file(t, c.job, c.dest)
		if err := c.load(r.localize(t, f)); err != nil {
			t.Errorf("%s/%s does not load: %v", c.job, c.dest, err)
		}
	}
	return r
}

// TestExampleManifest renders docs/examples/manifest.yml: every job of
// netman is in it and every config it renders loads.
func TestExampleManifest(t *testing.T) {
	root := repoRoot(t)
	r := renderManifest(t, yamlFile(t, filepath.Join(root, "docs", "examples", "manifest.yml")))
	for _, job := range jobNames(t) {
		if job == "iptables-logger" {
			continue // optional; see enable-iptables-logger.yml
		}
		found := false
		for _, f := range r.result.Rendered {
			found = found || f.Job == job
		}
		if !found {
			t.Errorf("docs/examples/manifest.yml has no %s job", job)
		}
	}
}

// TestOpsFile applies docs/examples/use-netman.yml (and
// enable-iptables-logger.yml, enable-backup-restore.yml,
// add-performance-test-sd.yml) to cf-deployment's networking jobs as they are
// written for upstream's releases: every job netman has moves to netman,
// no job upstream deploys is removed, vxlan-policy-agent keeps
// enable_asg_syncing on beside a policy-server-asg-syncer, and
// cf-deployment's properties render with netman's jobs.
func TestOpsFile(t *testing.T) {
	root := repoRoot(t)
	base := yamlFile(t, filepath.Join(root, "src", "release", "testdata", "cf-deployment-networking.yml"))
	var ops []any
	for _, f := range []string{"use-netman.yml", "enable-iptables-logger.yml", "enable-backup-restore.yml", "add-performance-test-sd.yml"} {
		o, ok := yamlFile(t, filepath.Join(root, "docs", "examples", f)).([]any)
		if !ok {
			t.Fatalf("%s is not a list of operations", f)
		}
		ops = append(ops, o...)
	}
	// Every job of the base manifest, by instance group, before the ops.
	jobsOf := func(doc any) map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, e := range doc.(map[string]any)["instance_groups"].([]any) {
			ig := e.(map[string]any)
			for _, je := range ig["jobs"].([]any) {
				job := je.(map[string]any)
				out[fmt.Sprintf("%s/%s", ig["name"], job["name"])] = job
			}
		}
		return out
	}
	upstream := slices.Sorted(maps.Keys(jobsOf(base)))
	doc, err := applyOps(base, ops)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing upstream deploys is removed: each job is still in its
	// instance group, from netman or from its own release.
	after := jobsOf(doc)
	for _, name := range upstream {
		if after[name] == nil {
			t.Errorf("the ops-files remove %s, which upstream deploys", name)
		}
	}
	// Dynamic ASGs stay on: the agent's enable_asg_syncing is true, set or
	// by the job's default.
	agent := after["diego-cell/vxlan-policy-agent"]
	if agent == nil {
		t.Fatal("no diego-cell/vxlan-policy-agent after the ops-files")
	}
	props, _ := agent["properties"].(map[string]any)
	asgSyncing, set := props["enable_asg_syncing"]
	if !set {
		asgSyncing = specDefault(t, "vxlan-policy-agent", "enable_asg_syncing")
	}
	if asgSyncing != true {
		t.Errorf("vxlan-policy-agent's enable_asg_syncing is %v after the ops-files, want true", asgSyncing)
	}
	if after["api/policy-server-asg-syncer"] == nil {
		t.Error("no api/policy-server-asg-syncer after the ops-files: nothing would fill security_groups")
	}

	ours := jobNames(t)
	m := doc.(map[string]any)
	releases := map[string]bool{}
	for _, r := range m["releases"].([]any) {
		releases[fmt.Sprint(r.(map[string]any)["name"])] = true
	}
	if !releases["netman"] {
		t.Error("the netman release is not added")
	}
	onNetman := map[string]bool{}
	for _, e := range m["instance_groups"].([]any) {
		ig := e.(map[string]any)
		for _, je := range ig["jobs"].([]any) {
			job := je.(map[string]any)
			name, release := fmt.Sprint(job["name"]), fmt.Sprint(job["release"])
			switch {
			case release == "netman":
				onNetman[name] = true
				if !slices.Contains(ours, name) {
					t.Errorf("%s/%s is moved to netman, which has no such job", ig["name"], name)
				}
			case slices.Contains(ours, name):
				t.Errorf("%s/%s still runs from %s", ig["name"], name, release)
			case name == "policy-server-asg-syncer" && ig["name"] == "api":
				t.Error("policy-server-asg-syncer stays beside netman's policy-server: its policy-server package collides")
			}
			if props, _ := job["properties"].(map[string]any); props != nil && props["enable_asg_syncing"] == false {
				t.Errorf("%s/%s: the ops-file turns dynamic ASGs off (enable_asg_syncing: false)", ig["name"], name)
			}
			if !releases[release] {
				t.Errorf("%s/%s names release %s, which the manifest does not list", ig["name"], name, release)
			}
		}
	}
	for _, job := range ours {
		if !onNetman[job] {
			t.Errorf("no instance group runs netman's %s after the ops-files", job)
		}
	}
	renderManifest(t, doc)
}

func TestApplyOps(t *testing.T) {
	doc := map[string]any{"igs": []any{map[string]any{"name": "a", "jobs": []any{map[string]any{"name": "j", "release": "x"}}}}}
	ops := []any{
		map[string]any{"type": "replace", "path": "/igs/name=a/jobs/name=j/release", "value": "y"},
		map[string]any{"type": "replace", "path": "/igs/name=a/jobs/name=k?/release", "value": "z"},
		map[string]any{"type": "replace", "path": "/igs/name=a/jobs/name=j/properties?/p", "value": 1},
		map[string]any{"type": "remove", "path": "/igs/name=b?"},
		map[string]any{"type": "replace", "path": "/releases?/-", "value": "r"},
	}
	out, err := applyOps(doc, ops)
	if err != nil {
		t.Fatal(err)
	}
	want := `map[igs:[map[jobs:[map[name:j properties:map[p:1] release:y] map[name:k release:z]] name:a]] releases:[r]]`
	if got := fmt.Sprint(out); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if _, err := applyOps(doc, []any{map[string]any{"type": "replace", "path": "/igs/name=c/x", "value": 1}}); err == nil {
		t.Error("a missing required element did not fail")
	}
	out, err = applyOps(out, []any{map[string]any{"type": "remove", "path": "/igs/name=a/jobs/name=k"}})
	if err != nil || strings.Contains(fmt.Sprint(out), "name:k") {
		t.Errorf("remove: %v %v", out, err)
	}
}

// specDefault is a property's default in jobs/<job>/spec (nil without one).
func specDefault(t *testing.T, job, property string) any {
	t.Helper()
	spec, _ := yamlFile(t, filepath.Join(repoRoot(t), "jobs", job, "spec")).(map[string]any)
	props, _ := spec["properties"].(map[string]any)
	p, _ := props[property].(map[string]any)
	return p["default"]
}

// TestNotThereYetSaysWhy: docs/bosh-release.md's "Not there yet" lists
// nothing without saying why, and no job of the release as missing.
func TestNotThereYetSaysWhy(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "bosh-release.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Not there yet\n")
	if !ok {
		t.Fatal(`docs/bosh-release.md has no "## Not there yet" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var items []string
	for _, line := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(line, "- "):
			items = append(items, line[2:])
		case strings.HasPrefix(line, "  ") && len(items) > 0:
			items[len(items)-1] += " " + strings.TrimSpace(line)
		}
	}
	jobs := jobNames(t)
	for _, item := range items {
		if !strings.Contains(item, " because ") {
			t.Errorf("Not there yet: %q does not say why (no \"because\")", item)
		}
		for _, job := range jobs {
			if strings.Contains(item, "`"+job+"`") {
				t.Errorf("Not there yet: %q names the job %s, which the release has", item, job)
			}
		}
	}
}

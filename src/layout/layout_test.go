// Package layout holds the test that keeps the import rules of
// docs/architecture.md ("What may import what") true. It reads every Go
// file of the module with go/parser, so it needs no toolchain calls and
// runs in a fraction of a second.
package layout

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/netman-release/netman/"

// shared are the packages every component may use: the domain model and the
// mechanisms. None of them imports a component.
var shared = []string{
	"src/policy", // the domain model: imports only shared leaves (src/jsonenc)
	"src/configfile", "src/filelock", "src/logging", "src/metrics", "src/mtls",
	"src/garden", "src/gardenclient",
	"src/sqldb", "src/iptables", "src/iptables/rules", "src/nft", "src/metadata", "src/lifecycle", "src/locket",
	"src/netlinkx", "src/jsonhttp", "src/jsonenc", "src/observe", "src/localports",
	"src/silk/overlay6", // the dual-stack address model: silk, the agent, the wrapper and the DNS adapter derive IPv6 addresses with it
}

// components are the daemons and clients, by subtree. A component imports
// shared packages and its own subtree, never another component: they meet
// only through the wire contracts in shared packages.
var components = []string{
	"src/policyserver", "src/silk", "src/agent", "src/cniwrapper", "src/gardennet",
	"src/iptableslogger", "src/netmon", "src/healthchecker", "src/discovery", "src/cli",
}

// tools sit above the components: they may import any production package.
var tools = []string{"src/lab", "src/fleet", "src/release", "src/namespace", "src/standin"}

type pkg struct {
	dir     string          // module-relative directory, e.g. src/agent
	imports map[string]bool // module-relative netman packages, plus "testing" when imported
	tests   bool            // has only _test.go files
}

func load(t *testing.T) map[string]*pkg {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	pkgs := map[string]*pkg{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		rel = filepath.ToSlash(rel)
		if !strings.HasPrefix(rel, "src/") && !strings.HasPrefix(rel, "cmd/") {
			return nil // scripts/lib and the like are separate mains
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		k := pkgs[rel]
		if k == nil {
			k = &pkg{dir: rel, imports: map[string]bool{}, tests: true}
			pkgs[rel] = k
		}
		if strings.HasSuffix(name, "_test.go") {
			return nil
		}
		k.tests = false
		for _, spec := range f.Imports {
			ip, _ := strconv.Unquote(spec.Path.Value)
			switch {
			case ip == "testing":
				k.imports["testing"] = true
			case strings.HasPrefix(ip, module):
				k.imports[strings.TrimPrefix(ip, module)] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, k := range pkgs {
		if k.tests {
			delete(pkgs, dir) // test-only packages (src/e2e, this one) import what they like
		}
	}
	return pkgs
}

// within reports whether dir is one of roots or below one of them.
func within(dir string, roots []string) bool {
	for _, r := range roots {
		if dir == r || strings.HasPrefix(dir, r+"/") {
			return true
		}
	}
	return false
}

// testSupport reports whether a package exists for tests: everything under
// src/testsupport, every package named …test (Go's convention, as
// httptest: mtlstest, storetest, iptablestest, ...) and any package that
// imports "testing". Production code must never reach one.
func testSupport(k *pkg) bool {
	return within(k.dir, []string{"src/testsupport"}) || strings.HasSuffix(path.Base(k.dir), "test") || k.imports["testing"]
}

func TestEveryPackageHasAPlace(t *testing.T) {
	for dir, k := range load(t) {
		if strings.HasPrefix(dir, "cmd/") || testSupport(k) {
			continue
		}
		if !slices.Contains(shared, dir) && !within(dir, components) && !within(dir, tools) {
			t.Errorf("%s is in none of the layers of docs/architecture.md; add it to the table there and to this test", dir)
		}
	}
}

func TestProductionNeverReachesTestCode(t *testing.T) {
	pkgs := load(t)
	for dir, k := range pkgs {
		if testSupport(k) {
			continue
		}
		// Depth-first over netman imports; report the first path to test code.
		seen := map[string]bool{}
		var walk func(d string, trail []string) []string
		walk = func(d string, trail []string) []string {
			if seen[d] {
				return nil
			}
			seen[d] = true
			p := pkgs[d]
			if p == nil {
				return nil
			}
			if testSupport(p) {
				return append(trail, d)
			}
			for _, imp := range sortedImports(p) {
				if found := walk(imp, append(trail, d)); found != nil {
					return found
				}
			}
			return nil
		}
		if trail := walk(dir, nil); trail != nil {
			t.Errorf("production package %s reaches test code: %s", dir, strings.Join(trail, " → "))
		}
	}
}

func TestImportRules(t *testing.T) {
	pkgs := load(t)
	for dir, k := range pkgs {
		if testSupport(k) || strings.HasPrefix(dir, "cmd/") || within(dir, tools) {
			continue
		}
		for imp := range k.imports {
			if imp == "testing" {
				continue
			}
			switch {
			case dir == "src/policy" && (pkgs[imp] == nil || len(sortedImports(pkgs[imp])) > 0 || !slices.Contains(shared, imp)):
				t.Errorf("src/policy, the domain model, imports %s; it may import only shared leaves (packages importing no netman package)", imp)
			case slices.Contains(shared, dir) && !slices.Contains(shared, imp):
				t.Errorf("shared package %s imports %s, which is not shared", dir, imp)
			case within(dir, components) && !slices.Contains(shared, imp) && component(imp) != component(dir):
				t.Errorf("component %s imports %s of another component; share it through a shared package", dir, imp)
			}
		}
	}
}

// component returns the subtree of components that dir belongs to.
func component(dir string) string {
	for _, c := range components {
		if dir == c || strings.HasPrefix(dir, c+"/") {
			return c
		}
	}
	return ""
}

func sortedImports(k *pkg) []string {
	out := make([]string, 0, len(k.imports))
	for imp := range k.imports {
		if imp != "testing" {
			out = append(out, imp)
		}
	}
	sort.Strings(out)
	return out
}

// TestArchitectureDocListsEveryPackage keeps docs/architecture.md's layout
// tables in step with the tree: every production package is named there,
// by its path or, inside a subtree row such as `src/silk/…`, by its name.
func TestArchitectureDocListsEveryPackage(t *testing.T) {
	doc, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	for dir, k := range load(t) {
		if strings.HasPrefix(dir, "cmd/") || testSupport(k) {
			continue
		}
		if !strings.Contains(text, "`"+dir+"`") && !strings.Contains(text, "`"+path.Base(dir)+"`") {
			t.Errorf("docs/architecture.md does not mention %s", dir)
		}
	}
}

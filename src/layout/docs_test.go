package layout

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is the module's root, two levels up.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// markdownFiles are the repository's Markdown pages: README.md, docs/ and
// the READMEs of jobs/ and packages/ (not testdata).
func markdownFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules" || d.Name() == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".md") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found only %d Markdown files under %s", len(files), root)
	}
	return files
}

var (
	// inlineLink is [text](target) and ![alt](target "title"); refLink is
	// a reference definition, [name]: target.
	inlineLink = regexp.MustCompile(`\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	refLink    = regexp.MustCompile(`(?m)^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)`)
	// sharedNotes are the design notes of the machine netman was written
	// on, which a reader of the repository cannot open.
	sharedNotes = regexp.MustCompile(`(\.\./)+shared\b|/work/shared\b`)
)

// TestDocsLinkInsideTheRepo: every link of README.md and the docs is a web
// address or a file of this repository that exists; none points outside
// the repository (../shared, /work/shared, an absolute path), where a
// reader of the repository has nothing to open.
func TestDocsLinkInsideTheRepo(t *testing.T) {
	root := repoRoot(t)
	for _, file := range markdownFiles(t, root) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, file)
		text := string(b)
		for _, m := range sharedNotes.FindAllString(text, -1) {
			t.Errorf("%s names the shared notes (%s): move what matters into docs/ and link that", rel, m)
		}
		var targets []string
		for _, m := range inlineLink.FindAllStringSubmatch(text, -1) {
			targets = append(targets, m[1])
		}
		for _, m := range refLink.FindAllStringSubmatch(text, -1) {
			targets = append(targets, m[1])
		}
		for _, target := range targets {
			if strings.HasPrefix(target, "#") || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, _, _ := strings.Cut(target, "#")
			if filepath.IsAbs(path) {
				t.Errorf("%s links to %s, an absolute path outside the repository", rel, target)
				continue
			}
			dest := filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
			if r, err := filepath.Rel(root, dest); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
				t.Errorf("%s links to %s, outside the repository", rel, target)
				continue
			}
			if _, err := os.Stat(dest); err != nil {
				t.Errorf("%s links to %s, which does not exist", rel, target)
			}
		}
	}
}

// TestReadmeNamesWhatScriptsTestInstalls: README's set-up paragraph names
// every Debian package scripts/test installs (scripts/lib/db.sh's
// missing_packages), so a reader knows what running it changes.
func TestReadmeNamesWhatScriptsTestInstalls(t *testing.T) {
	root := repoRoot(t)
	db, err := os.ReadFile(filepath.Join(root, "scripts/lib/db.sh"))
	if err != nil {
		t.Fatal(err)
	}
	body := regexp.MustCompile(`(?s)\nmissing_packages\(\) \{\n(.*?)\n\}\n`).FindSubmatch(db)
	if body == nil {
		t.Fatal("scripts/lib/db.sh has no missing_packages function")
	}
	var pkgs []string
	for _, m := range regexp.MustCompile(`pkgs\+=\(([^)]*)\)`).FindAllSubmatch(body[1], -1) {
		pkgs = append(pkgs, strings.Fields(string(m[1]))...)
	}
	if len(pkgs) < 8 {
		t.Fatalf("missing_packages names %d packages (%v), want at least iptables, iproute2, nftables, ethtool, postgresql, mariadb-server, ruby, make", len(pkgs), pkgs)
	}
	test, err := os.ReadFile(filepath.Join(root, "scripts/test"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(test), "test_env_up") {
		t.Fatal("scripts/test no longer calls test_env_up: this test reads what it installs from scripts/lib/db.sh")
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, setup, ok := strings.Cut(string(readme), "\n## Set-up\n")
	if !ok {
		t.Fatal("README.md has no Set-up section")
	}
	setup, _, _ = strings.Cut(setup, "\n## ")
	i := strings.Index(setup, "`scripts/test` runs")
	if i < 0 {
		t.Fatal("README's Set-up section has no paragraph starting \"`scripts/test` runs\"")
	}
	paragraph, _, _ := strings.Cut(setup[i:], "\n\n")
	for _, p := range pkgs {
		if !strings.Contains(paragraph, "`"+p+"`") {
			t.Errorf("README's scripts/test paragraph does not name `%s`, which scripts/test installs:\n%s", p, paragraph)
		}
	}
}

// TestSkipsGoThroughTesttier: no test skips on its own (t.Skip, Skipf,
// SkipNow) outside src/testsupport/testtier, which fails instead under CI.
// Subprocess helpers need no skip either: a test binary that doubles as a
// command does so in TestMain (src/testsupport/maintest), before any test
// runs, so a helper is never a test, let alone a skipped one in
// scripts/test's count (Go's older TestHelperProcess idiom, a test that
// skips unless it is the child, is what this keeps out).
func TestSkipsGoThroughTesttier(t *testing.T) {
	root := repoRoot(t)
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if !strings.HasSuffix(p, ".go") || strings.HasPrefix(rel, "src/testsupport/testtier/") {
			return nil
		}
		files++
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
					switch sel.Sel.Name {
					case "Skip", "Skipf", "SkipNow":
						t.Errorf("%s: %s skips with %s; use testtier.Unavailable (or testtier.Long), which fails under CI", fset.Position(call.Pos()), fn.Name.Name, sel.Sel.Name)
					}
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("read %d Go files, want the whole module", files)
	}
}

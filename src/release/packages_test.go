package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/netman-release/netman/src/testsupport/testtier"
)

var update = flag.Bool("update", false, "rewrite the files lists of packages/*/spec from the Go imports")

// golangPackage is the Go toolchain package the other packages build with.
const golangPackage = "netman-golang-1.26-linux"

func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	testtier.Unavailable(t, "no go command in PATH")
	return ""
}

// packageFiles is the files list a Go package needs: the module files, the
// netman packages its binaries import (their .go files) and the vendored
// packages they import, as BOSH globs under the staged src/netman.
func packageFiles(t *testing.T, pkg string) []string {
	t.Helper()
	root := repoRoot(t)
	targets := goBuildTargets(t, pkg)
	args := append([]string{"list", "-deps", "-f",
		"{{if not .Standard}}{{.ImportPath}}\t{{.Dir}}\t{{if .Module}}{{.Module.Main}}{{end}}\t{{join .EmbedFiles \",\"}}{{end}}"}, targets...)
	cmd := exec.Command(goTool(t), args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list for package %s: %v\n%s", pkg, err, stderr.Bytes())
	}
	own := map[string]bool{}
	var vendored []string
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			t.Fatalf("go list: unexpected line %q", line)
		}
		importPath, dir, main, embeds := f[0], f[1], f[2], f[3]
		if main != "true" {
			vendored = append(vendored, "netman/vendor/"+importPath+"/*")
			continue
		}
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		own["netman/"+filepath.ToSlash(rel)+"/*.go"] = true
		for _, e := range strings.Split(embeds, ",") {
			if e != "" {
				own["netman/"+filepath.ToSlash(filepath.Join(rel, e))] = true
			}
		}
	}
	files := []string{"netman/go.mod", "netman/go.sum", "netman/vendor/modules.txt"}
	var ownList []string
	for f := range own {
		ownList = append(ownList, f)
	}
	sort.Strings(ownList)
	sort.Strings(vendored)
	return append(append(files, ownList...), vendored...)
}

// packageSpec is the whole spec file of a Go package.
func packageSpec(name string, files []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "---\nname: %s\n\ndependencies:\n  - %s\n\n", name, golangPackage)
	b.WriteString("# Under the release's src/: the module staged by make release-src (docs/bosh-release.md).\n")
	b.WriteString("# Generated from the Go imports of what packaging builds; after changing imports run\n")
	b.WriteString("#   go test ./src/release -run TestPackageFiles -update\n")
	b.WriteString("files:\n")
	for _, f := range files {
		fmt.Fprintf(&b, "  - %s\n", f)
	}
	return b.String()
}

// TestPackageFiles checks that each Go package's spec lists exactly the
// sources its binaries need, so BOSH puts them in the package (a missing
// directory breaks compilation; an extra one recompiles it for nothing).
func TestPackageFiles(t *testing.T) {
	root := repoRoot(t)
	for _, name := range listDir(t, filepath.Join(root, "packages")) {
		if name == golangPackage {
			continue
		}
		path := filepath.Join(root, "packages", name, "spec")
		if _, err := os.Stat(path); err != nil {
			continue
		}
		want := packageSpec(name, packageFiles(t, name))
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) == want {
			continue
		}
		if *update {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("rewrote packages/%s/spec", name)
			continue
		}
		t.Errorf("packages/%s/spec does not list what its binaries import; run\n"+
			"  go test ./src/release -run TestPackageFiles -update\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// glob resolves a BOSH package files pattern under dir: * ? [..] within a
// path segment, ** across segments. Only regular files are returned.
func glob(dir, pattern string) ([]string, error) {
	var out []string
	var walk func(rel string, segs []string) error
	walk = func(rel string, segs []string) error {
		if len(segs) == 0 {
			if fi, err := os.Stat(filepath.Join(dir, rel)); err == nil && fi.Mode().IsRegular() {
				out = append(out, rel)
			}
			return nil
		}
		entries, err := os.ReadDir(filepath.Join(dir, rel))
		if err != nil {
			return nil
		}
		if segs[0] == "**" {
			if err := walk(rel, segs[1:]); err != nil {
				return err
			}
			for _, e := range entries {
				if e.IsDir() {
					if err := walk(filepath.Join(rel, e.Name()), segs); err != nil {
						return err
					}
				}
			}
			return nil
		}
		for _, e := range entries {
			ok, err := filepath.Match(segs[0], e.Name())
			if err != nil {
				return err
			}
			if ok {
				if err := walk(filepath.Join(rel, e.Name()), segs[1:]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := walk("", strings.Split(pattern, "/"))
	sort.Strings(out)
	return slices.Compact(out), err
}

// TestCompilePackages stages the release (make release-src) and compiles
// every package as a BOSH compilation VM does: only the files the spec's
// globs match are copied into an empty directory, and the packaging script
// runs there, offline, with the golang package installed under
// BOSH_PACKAGES_DIR. The golang package is fed a tarball of symbolic links
// to the local toolchain instead of the real one.
func TestCompilePackages(t *testing.T) {
	testtier.Long(t, "compiles every package")
	_, packages := specs(t)
	root := repoRoot(t)
	if _, err := exec.LookPath("make"); err != nil {
		testtier.Unavailable(t, "make is not installed (scripts/test installs Debian's make as root)")
	}
	goBin := goTool(t)
	tmp := t.TempDir()
	release := filepath.Join(tmp, "release")
	stage := exec.Command("make", "-s", "release-src", "RELEASE_DIR="+release, "GO_TARBALL=none", "GO="+goBin)
	stage.Dir = root
	if out, err := stage.CombinedOutput(); err != nil {
		t.Fatalf("make release-src: %v\n%s", err, out)
	}

	goroot, err := exec.Command(goBin, "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	gocache, err := exec.Command(goBin, "env", "GOCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	blobs := filepath.Join(release, "blobs")
	if err := fakeGoTarball(filepath.Join(blobs, "golang", "go1.26.0.linux-amd64.tar.gz"), strings.TrimSpace(string(goroot))); err != nil {
		t.Fatal(err)
	}

	packagesDir := filepath.Join(tmp, "packages")
	compile := func(t *testing.T, name string) string {
		t.Helper()
		spec := packages[name]
		work := filepath.Join(tmp, "compile", name)
		install := filepath.Join(packagesDir, name)
		for _, dir := range []string{work, install} {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, pattern := range stringList(spec["files"]) {
			var matched []string
			var from string
			for _, base := range []string{filepath.Join(release, "src"), blobs} {
				if m, err := glob(base, pattern); err == nil && len(m) > 0 {
					matched, from = m, base
					break
				}
			}
			if len(matched) == 0 {
				t.Fatalf("packages/%s: %q matches no file in the staged release", name, pattern)
			}
			for _, rel := range matched {
				copyFile(t, filepath.Join(from, rel), filepath.Join(work, rel))
			}
		}
		copyFile(t, filepath.Join(release, "packages", name, "packaging"), filepath.Join(work, "packaging"))
		cmd := exec.Command("bash", "-e", "packaging")
		cmd.Dir = work
		cmd.Env = []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME=" + tmp,
			"GOCACHE=" + strings.TrimSpace(string(gocache)),
			"BOSH_COMPILE_TARGET=" + work,
			"BOSH_INSTALL_TARGET=" + install,
			"BOSH_PACKAGE_NAME=" + name,
			"BOSH_PACKAGE_VERSION=dev",
			"BOSH_PACKAGES_DIR=" + packagesDir,
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("packages/%s/packaging: %v\n%s", name, err, out)
		}
		return install
	}

	golang := compile(t, golangPackage)
	for _, f := range []string{"bosh/compile.env", "bosh/runtime.env", "bin/go"} {
		if _, err := os.Stat(filepath.Join(golang, f)); err != nil {
			t.Fatalf("%s: %v", golangPackage, err)
		}
	}
	names := make([]string, 0, len(packages))
	for name := range packages {
		if name != golangPackage {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			install := compile(t, name)
			for _, bin := range binaries(t, name) {
				fi, err := os.Stat(filepath.Join(install, "bin", bin))
				if err != nil {
					t.Errorf("%s does not install bin/%s: %v", name, bin, err)
					continue
				}
				if fi.Mode()&0o111 == 0 {
					t.Errorf("%s: bin/%s is not executable", name, bin)
				}
				if name == "runc-cni" && bin == "garden-external-networker" && fi.Mode()&fs.ModeSetuid == 0 {
					t.Errorf("runc-cni: bin/garden-external-networker is not setuid")
				}
			}
		})
	}
}

// fakeGoTarball writes a go*.linux-amd64.tar.gz whose go/ entries are
// symbolic links to the local toolchain's top-level entries.
func fakeGoTarball(path, goroot string) error {
	entries, err := os.ReadDir(goroot)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: "go/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
		return err
	}
	for _, e := range entries {
		hdr := &tar.Header{Name: "go/" + e.Name(), Typeflag: tar.TypeSymlink, Linkname: filepath.Join(goroot, e.Name()), Mode: 0o777}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

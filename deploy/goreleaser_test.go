package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestGoreleaserConfig checks .goreleaser.yaml against the tree: every
// file it packages exists, the ldflags name buildinfo's variables, the
// packages install the unit where systemd looks, the image's Dockerfile is
// the release one. goreleaser check runs when goreleaser is installed
// (building it here would take longer than the whole suite).
func TestGoreleaserConfig(t *testing.T) {
	var cfg struct {
		Version int `yaml:"version"`
		Builds  []struct {
			ID        string   `yaml:"id"`
			Main      string   `yaml:"main"`
			Goos      []string `yaml:"goos"`
			Goarch    []string `yaml:"goarch"`
			Env       []string `yaml:"env"`
			Ldflags   []string `yaml:"ldflags"`
			Overrides []struct {
				Goarch string   `yaml:"goarch"`
				Env    []string `yaml:"env"`
			} `yaml:"overrides"`
		} `yaml:"builds"`
		Archives []struct {
			Files []string `yaml:"files"`
		} `yaml:"archives"`
		Checksum struct {
			NameTemplate string `yaml:"name_template"`
		} `yaml:"checksum"`
		Nfpms []struct {
			Formats  []string `yaml:"formats"`
			License  string   `yaml:"license"`
			Bindir   string   `yaml:"bindir"`
			Contents []struct {
				Src  string `yaml:"src"`
				Dst  string `yaml:"dst"`
				Type string `yaml:"type"`
			} `yaml:"contents"`
			Scripts map[string]string `yaml:"scripts"`
		} `yaml:"nfpms"`
		Dockers []struct {
			Dockerfile string   `yaml:"dockerfile"`
			Images     []string `yaml:"images"`
			Platforms  []string `yaml:"platforms"`
			ExtraFiles []string `yaml:"extra_files"`
		} `yaml:"dockers_v2"`
	}
	src := readFile(t, "../.goreleaser.yaml")
	dec := yaml.NewDecoder(strings.NewReader(src))
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	exists := func(what, path string) {
		t.Helper()
		if _, err := os.Stat(filepath.Join("..", path)); err != nil {
			t.Errorf("%s %s: %v", what, path, err)
		}
	}
	if cfg.Version != 2 || len(cfg.Builds) != 1 {
		t.Fatalf("version %d, %d builds", cfg.Version, len(cfg.Builds))
	}
	b := cfg.Builds[0]
	exists("build main", b.Main)
	if !slices.Equal(b.Goos, []string{"linux"}) || !slices.Equal(b.Goarch, []string{"amd64", "arm64"}) || !slices.Contains(b.Env, "CGO_ENABLED=1") {
		t.Errorf("build: goos %q goarch %q env %q: want linux amd64 and arm64 with cgo", b.Goos, b.Goarch, b.Env)
	}
	for _, o := range b.Overrides {
		if !slices.ContainsFunc(o.Env, func(e string) bool { return strings.HasPrefix(e, "CC=") }) {
			t.Errorf("override for %s names no C cross-compiler", o.Goarch)
		}
	}
	ld := strings.Join(b.Ldflags, " ")
	bi := readFile(t, "../internal/buildinfo/buildinfo.go")
	for _, v := range []string{"version", "commit", "date"} {
		if !strings.Contains(ld, "github.com/pgwarden/pgwarden/internal/buildinfo."+v+"=") {
			t.Errorf("ldflags do not set buildinfo.%s", v)
		}
		if !strings.Contains(bi, "\t"+v+" ") {
			t.Errorf("internal/buildinfo has no variable %s for the ldflags", v)
		}
	}
	for _, a := range cfg.Archives {
		for _, f := range a.Files {
			exists("archive file", f)
		}
	}
	if cfg.Checksum.NameTemplate == "" {
		t.Error("no checksum file")
	}
	if len(cfg.Nfpms) != 1 {
		t.Fatalf("%d nfpms", len(cfg.Nfpms))
	}
	n := cfg.Nfpms[0]
	if !slices.Equal(n.Formats, []string{"deb", "rpm"}) || n.License != "Apache-2.0" || n.Bindir != "/usr/bin" {
		t.Errorf("nfpm: formats %q, license %q, bindir %q", n.Formats, n.License, n.Bindir)
	}
	dsts := map[string]string{}
	for _, c := range n.Contents {
		exists("package content", c.Src)
		dsts[c.Dst] = c.Src
		if strings.HasPrefix(c.Dst, "/etc/") && c.Type != "config|noreplace" {
			t.Errorf("%s: an edited configuration file must survive upgrades (type config|noreplace)", c.Dst)
		}
	}
	if dsts["/usr/lib/systemd/system/pgwarden.service"] != "deploy/pgwarden.service" || dsts["/usr/lib/sysusers.d/pgwarden.conf"] != "deploy/pgwarden.sysusers" {
		t.Errorf("the packages do not install the unit and its user: %v", dsts)
	}
	// The unit's ExecStart program is where the package puts the binary,
	// and every /etc/pgwarden file the unit and the configuration name
	// either ships or is a secret or certificate the operator provides.
	unitSrc := readFile(t, "pgwarden.service")
	if !strings.Contains(unitSrc, "ExecStart="+n.Bindir+"/pgwarden ") {
		t.Errorf("the unit does not run %s/pgwarden", n.Bindir)
	}
	for _, f := range []string{"/etc/pgwarden/pgwarden.yaml", "/etc/pgwarden/policy.yaml", "/etc/pgwarden/pgwarden.env"} {
		if dsts[f] == "" {
			t.Errorf("the packages do not install %s", f)
		}
	}
	for _, s := range n.Scripts {
		exists("package script", s)
	}
	if len(cfg.Dockers) != 1 {
		t.Fatalf("%d images", len(cfg.Dockers))
	}
	d := cfg.Dockers[0]
	if d.Dockerfile != "deploy/Dockerfile.release" || !slices.Equal(d.Platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("image: dockerfile %s, platforms %q", d.Dockerfile, d.Platforms)
	}
	for _, f := range d.ExtraFiles {
		exists("image extra file", f)
	}
	for _, line := range strings.Split(readFile(t, "Dockerfile.release"), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "COPY" && !strings.HasPrefix(f[1], "${TARGETPLATFORM}") && !slices.Contains(d.ExtraFiles, f[1]) {
			t.Errorf("Dockerfile.release copies %s, which is not in the image's extra_files", f[1])
		}
	}

	if gr, err := exec.LookPath("goreleaser"); err == nil {
		cmd := exec.Command(gr, "check")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("goreleaser check: %v\n%s", err, out)
		}
	} else {
		t.Log("goreleaser is not installed: .goreleaser.yaml is checked against the tree by this test only")
	}
}

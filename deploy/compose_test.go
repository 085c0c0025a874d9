package deploy

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type composeFile struct {
	Name     string `yaml:"name"`
	Services map[string]struct {
		Image string `yaml:"image"`
		Build *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
			Target     string `yaml:"target"`
		} `yaml:"build"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		ReadOnly    bool              `yaml:"read_only"`
		User        string            `yaml:"user"`
		CapDrop     []string          `yaml:"cap_drop"`
		SecurityOpt []string          `yaml:"security_opt"`
		Ports       []string          `yaml:"ports"`
		DependsOn   map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// TestCompose checks deploy/compose.yaml against what it must hold:
// PostgreSQL, pgwarden built from deploy/Dockerfile and a webhook receiver;
// pgwarden unprivileged on a read-only root with its data on a volume and
// its configuration and policy mounted from files that pgwarden accepts.
// (No container engine here: the services are not started.)
func TestCompose(t *testing.T) {
	src := readFile(t, "compose.yaml")
	var cf composeFile
	if err := yaml.Unmarshal([]byte(src), &cf); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	// Keys the Compose specification knows, so that a misspelt one (which
	// compose would reject) fails here.
	var raw struct {
		Top      map[string]any            `yaml:",inline"`
		Services map[string]map[string]any `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(src), &raw); err != nil {
		t.Fatal(err)
	}
	for k := range raw.Top {
		if !strings.HasPrefix(k, "x-") && !slices.Contains([]string{"name", "services", "volumes", "networks", "secrets", "configs"}, k) {
			t.Errorf("compose.yaml: unknown top-level key %q", k)
		}
	}
	serviceKeys := []string{"image", "build", "command", "entrypoint", "environment", "env_file", "volumes", "read_only",
		"user", "cap_drop", "cap_add", "security_opt", "ports", "depends_on", "healthcheck", "restart", "secrets",
		"networks", "tmpfs", "stop_grace_period", "stop_signal", "labels", "deploy", "ulimits"}
	for name, svc := range raw.Services {
		for k := range svc {
			if !slices.Contains(serviceKeys, k) {
				t.Errorf("compose.yaml: service %s: unknown key %q", name, k)
			}
		}
	}
	for _, name := range []string{"postgres", "pgwarden", "alertsink"} {
		if _, ok := cf.Services[name]; !ok {
			t.Fatalf("compose.yaml has no service %q", name)
		}
	}
	_, stages := parseDockerfile(t, readFile(t, "Dockerfile"))
	stageNames := map[string]bool{}
	for _, s := range stages {
		stageNames[s.name] = true
	}
	for _, name := range []string{"pgwarden", "alertsink"} {
		svc := cf.Services[name]
		b := svc.Build
		if b == nil {
			t.Fatalf("%s: no build", name)
		}
		if got := filepath.Clean(filepath.Join(b.Context, b.Dockerfile)); got != "Dockerfile" && got != filepath.Clean("../deploy/Dockerfile") {
			t.Errorf("%s builds %s, want deploy/Dockerfile", name, got)
		}
		if _, err := os.Stat(filepath.Join(b.Context, "go.mod")); err != nil {
			t.Errorf("%s: build context %s is not the module root: %v", name, b.Context, err)
		}
		if !stageNames[b.Target] {
			t.Errorf("%s: target %q is not a stage of the Dockerfile", name, b.Target)
		}
		if !svc.ReadOnly || svc.User == "" || strings.HasPrefix(svc.User, "0") || !slices.Contains(svc.CapDrop, "ALL") ||
			!slices.Contains(svc.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: want read_only, a non-root user, cap_drop ALL and no-new-privileges", name)
		}
	}

	pw := cf.Services["pgwarden"]
	for dep, want := range map[string]string{"postgres": "service_healthy", "alertsink": "service_started"} {
		if pw.DependsOn[dep].Condition != want {
			t.Errorf("pgwarden depends_on %s: %q, want %q", dep, pw.DependsOn[dep].Condition, want)
		}
	}
	if pw.Healthcheck == nil || !slices.Contains(pw.Healthcheck.Test, "health") || !slices.Contains(pw.Healthcheck.Test, "--ready") {
		t.Errorf("pgwarden's healthcheck should be pgwarden health --ready")
	}
	for _, key := range []string{"PGWARDEN_AUDIT_KEY", "PGWARDEN_ADMIN_TOKEN", "PGWARDEN_WEBHOOK_SECRET", "PGWARDEN_CATALOG_PASSWORD"} {
		if pw.Environment[key] == "" {
			t.Errorf("pgwarden's environment lacks %s", key)
		}
	}
	if pw.Environment["PGWARDEN_WEBHOOK_SECRET"] != cf.Services["alertsink"].Environment["PGWARDEN_WEBHOOK_SECRET"] {
		t.Error("pgwarden and alertsink do not share the webhook secret")
	}

	// Mounts: files exist, named volumes are declared, and the targets are
	// where the configuration points.
	mounts := map[string]string{}
	for _, svcName := range []string{"postgres", "pgwarden"} {
		for _, v := range cf.Services[svcName].Volumes {
			parts := strings.Split(v, ":")
			src, dst := parts[0], parts[1]
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("%s mounts %s: %v", svcName, src, err)
				}
				if len(parts) < 3 || parts[2] != "ro" {
					t.Errorf("%s mounts %s writable", svcName, src)
				}
			} else if _, ok := cf.Volumes[src]; !ok {
				t.Errorf("%s mounts volume %s, not declared", svcName, src)
			}
			if svcName == "pgwarden" {
				mounts[dst] = src
			}
		}
	}
	if mounts["/etc/pgwarden/policy.yaml"] != "./policy.yaml" || mounts["/var/lib/pgwarden"] == "" {
		t.Errorf("pgwarden's mounts %v: want ./policy.yaml at /etc/pgwarden/policy.yaml and a volume at /var/lib/pgwarden", mounts)
	}
	cfgIdx := slices.Index(pw.Command, "--config")
	if cfgIdx < 0 || cfgIdx+1 >= len(pw.Command) {
		t.Fatalf("pgwarden's command %q has no --config", pw.Command)
	}
	cfgFile := mounts[pw.Command[cfgIdx+1]]
	if cfgFile == "" {
		t.Fatalf("the config file %s is not mounted", pw.Command[cfgIdx+1])
	}
	runPgwarden(t, nil, "config", "check", "--config", cfgFile)
	runPgwarden(t, nil, "policy", "check", mounts["/etc/pgwarden/policy.yaml"])

	var conf struct {
		Listen   string `yaml:"listen"`
		Upstream struct {
			URL string `yaml:"url"`
		} `yaml:"upstream"`
		Policy string `yaml:"policy"`
		Audit  struct {
			Dir string `yaml:"dir"`
		} `yaml:"audit"`
		StateDir string `yaml:"state_dir"`
		Admin    struct {
			Listen string `yaml:"listen"`
		} `yaml:"admin"`
		Notify struct {
			Webhook struct {
				URL string `yaml:"url"`
			} `yaml:"webhook"`
		} `yaml:"notify"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, cfgFile)), &conf); err != nil {
		t.Fatal(err)
	}
	if _, ok := mounts[conf.Policy]; !ok {
		t.Errorf("the configuration's policy %s is not mounted", conf.Policy)
	}
	for _, dir := range []string{conf.Audit.Dir, conf.StateDir} {
		if !strings.HasPrefix(dir, "/var/lib/pgwarden/") {
			t.Errorf("%s is not on the data volume: the root file system is read-only", dir)
		}
	}
	if u, _ := url.Parse(conf.Upstream.URL); u == nil || u.Hostname() != "postgres" {
		t.Errorf("upstream %s is not the postgres service", conf.Upstream.URL)
	}
	if u, _ := url.Parse(conf.Notify.Webhook.URL); u == nil || u.Hostname() != "alertsink" || u.Port() != "8099" {
		t.Errorf("webhook %s is not the alertsink service", conf.Notify.Webhook.URL)
	}
	if !strings.HasPrefix(conf.Admin.Listen, "0.0.0.0:") || !strings.HasPrefix(conf.Listen, "0.0.0.0:") {
		t.Errorf("listen %s, admin %s: inside a container both must listen on all addresses", conf.Listen, conf.Admin.Listen)
	}
	var published []string
	for _, p := range pw.Ports {
		f := strings.Split(p, ":")
		published = append(published, f[len(f)-1])
	}
	if !slices.Contains(published, "6432") || !slices.Contains(published, "7070") {
		t.Errorf("ports %q: want 6432 and 7070 published", pw.Ports)
	}

	// The demo's initdb script creates the catalog role the configuration
	// names, with the password given to pgwarden.
	initSQL := readFile(t, "compose/initdb.sql")
	if !strings.Contains(initSQL, "CREATE ROLE pgwarden_catalog LOGIN PASSWORD '"+pw.Environment["PGWARDEN_CATALOG_PASSWORD"]+"'") {
		t.Error("compose/initdb.sql does not create pgwarden_catalog with PGWARDEN_CATALOG_PASSWORD")
	}

	docker, err := exec.LookPath("docker")
	if err == nil && exec.Command(docker, "compose", "version").Run() == nil {
		if out, err := exec.Command(docker, "compose", "-f", "compose.yaml", "config", "--quiet").CombinedOutput(); err != nil {
			t.Errorf("docker compose config: %v\n%s", err, out)
		}
	} else {
		t.Log("docker compose is not installed: compose.yaml is checked by this test only")
	}
}

package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// helmBuildTimeout bounds building helm: the first build compiles the
// Kubernetes client libraries (minutes on a small machine); later ones
// come from Go's build cache, and the binary itself is kept in the user
// cache directory, keyed by deploy/tools/go.sum.
const helmBuildTimeout = 5 * time.Minute

// helmBinary returns a helm binary: $PGWARDEN_HELM, or helm built from
// deploy/tools at the version its go.mod pins. It skips the test, saying
// why, when helm cannot be had.
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("PGWARDEN_HELM"); h != "" {
		return h
	}
	sum := sha256.Sum256([]byte(readFile(t, "tools/go.mod") + readFile(t, "tools/go.sum")))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "pgwarden", "helm-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if testing.Short() {
		t.Skip("helm is not built yet and -short: chart not linted (make helm builds it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), helmBuildTimeout)
	defer cancel()
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "helm.sh/helm/v4/cmd/helm")
	cmd.Dir = "tools"
	out, err := cmd.CombinedOutput()
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		t.Skipf("helm did not build within %v (the first build compiles the Kubernetes libraries; what was compiled is cached for the next run, or run make helm): chart not linted", helmBuildTimeout)
	case err != nil:
		t.Skipf("helm cannot be built from deploy/tools (%v): chart not linted\n%s", err, out[max(0, len(out)-500):])
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// chartValues are the settings of a production-like install.
var chartValues = []string{
	"--set", "secrets.auditKey=" + strings.Repeat("ab", 32),
	"--set", "secrets.adminToken=0123456789abcdef-token",
	"--set", "state.url=postgres://pgwarden@state-db:5432/pgwarden",
	"--set", "catalog.url=postgres://pgwarden_catalog@db:5432/app",
	"--set", "audit.url=postgres://pgwarden@state-db:5432/pgwarden",
	"--set", "clientTLS.secret=pgwarden-tls",
	"--set", "upstream.caSecret=db-ca",
	"--set", "serviceMonitor.enabled=true",
}

func TestHelmLint(t *testing.T) {
	if out, err := helm(t, append([]string{"lint", "--strict", "helm/pgwarden"}, chartValues...)...); err != nil {
		t.Errorf("helm lint --strict: %v\n%s", err, out)
	}
	// Several replicas need the shared state database.
	out, err := helm(t, "template", "pgw", "helm/pgwarden", "--set", "secrets.auditKey=x", "--set", "secrets.adminToken=y")
	if err == nil || !strings.Contains(out, "set state.url") {
		t.Errorf("two replicas without state.url: %v\n%s", err, out)
	}
	out, err = helm(t, "template", "pgw", "helm/pgwarden", "--set", "state.url=postgres://s/p")
	if err == nil || !strings.Contains(out, "secrets.auditKey") {
		t.Errorf("no audit key and no existing secret: %v\n%s", err, out)
	}
}

type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       yaml.Node         `yaml:"spec"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Args    []string `yaml:"args"`
	EnvFrom []struct {
		SecretRef struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe   probe `yaml:"livenessProbe"`
	ReadinessProbe  probe `yaml:"readinessProbe"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

// TestHelmTemplate renders the chart and checks the objects: replicas
// sharing the state database, probes on /v1/health and /v1/ready, the
// security context, the policy mounted so that a change reaches the pods,
// and a configuration and a policy that pgwarden itself accepts.
func TestHelmTemplate(t *testing.T) {
	out, err := helm(t, append([]string{"template", "pgw", "helm/pgwarden"}, chartValues...)...)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	objects := map[string]k8sObject{}
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("rendered manifests: %v\n%s", err, out)
		}
		if o.Kind != "" {
			objects[o.Kind+"/"+o.Metadata.Name] = o
		}
	}
	var kinds []string
	for k := range objects {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	want := []string{"ConfigMap/pgw-pgwarden-config", "ConfigMap/pgw-pgwarden-policy", "Deployment/pgw-pgwarden",
		"PodDisruptionBudget/pgw-pgwarden", "Secret/pgw-pgwarden", "Service/pgw-pgwarden", "ServiceMonitor/pgw-pgwarden"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("objects %q, want %q", kinds, want)
	}

	var dep struct {
		Replicas int `yaml:"replicas"`
		Template struct {
			Spec struct {
				SecurityContext struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
					RunAsUser    int  `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				TerminationGracePeriodSeconds int         `yaml:"terminationGracePeriodSeconds"`
				Containers                    []container `yaml:"containers"`
				Volumes                       []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	}
	d := objects["Deployment/pgw-pgwarden"]
	must(t, d.Spec.Decode(&dep))
	if dep.Replicas < 2 {
		t.Errorf("replicas %d: want several by default", dep.Replicas)
	}
	ps := dep.Template.Spec
	if !ps.SecurityContext.RunAsNonRoot || ps.SecurityContext.RunAsUser == 0 {
		t.Errorf("pod security context %+v", ps.SecurityContext)
	}
	if ps.TerminationGracePeriodSeconds <= 30 {
		t.Errorf("terminationGracePeriodSeconds %d: sessions get 30s to finish", ps.TerminationGracePeriodSeconds)
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers", len(ps.Containers))
	}
	c := ps.Containers[0]
	sc := c.SecurityContext
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !sc.ReadOnlyRootFilesystem || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("container security context %+v", sc)
	}
	if c.LivenessProbe.HTTPGet.Path != "/v1/health" || c.ReadinessProbe.HTTPGet.Path != "/v1/ready" ||
		c.LivenessProbe.HTTPGet.Port != "admin" || c.ReadinessProbe.HTTPGet.Port != "admin" {
		t.Errorf("probes: liveness %+v, readiness %+v", c.LivenessProbe, c.ReadinessProbe)
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef.Name != "pgw-pgwarden" {
		t.Errorf("envFrom %+v: want the chart's Secret", c.EnvFrom)
	}
	if !slices.Contains(c.Args, "--config=/etc/pgwarden/config/pgwarden.yaml") {
		t.Errorf("args %q", c.Args)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
		if m.SubPath != "" {
			t.Errorf("volume %s mounted with subPath: the kubelet never updates such a file", m.Name)
		}
		if !m.ReadOnly && !strings.HasPrefix(m.MountPath, "/var/lib/pgwarden/") {
			t.Errorf("volume %s at %s is writable", m.Name, m.MountPath)
		}
	}
	for _, v := range ps.Volumes {
		if v.Name == "policy" && (v.ConfigMap == nil || v.ConfigMap.Name != "pgw-pgwarden-policy") {
			t.Errorf("the policy volume is not the policy ConfigMap")
		}
	}

	// The configuration and policy pass pgwarden's own checks, and point at
	// where the volumes are mounted.
	dir := t.TempDir()
	conf := objects["ConfigMap/pgw-pgwarden-config"].Data["pgwarden.yaml"]
	pol := objects["ConfigMap/pgw-pgwarden-policy"].Data["policy.yaml"]
	must(t, os.WriteFile(filepath.Join(dir, "pgwarden.yaml"), []byte(conf), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(pol), 0o600))
	runPgwarden(t, nil, "config", "check", "--config", filepath.Join(dir, "pgwarden.yaml"))
	runPgwarden(t, nil, "policy", "check", filepath.Join(dir, "policy.yaml"))
	for _, want := range []string{
		"policy: " + mounts["policy"] + "/policy.yaml",
		"cert_file: " + mounts["tls"] + "/tls.crt",
		"ca_file: " + mounts["upstream-ca"] + "/ca.crt",
		"state_url:", "share_state: true", "listen: 0.0.0.0:7070", "dir: " + mounts["audit"],
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("pgwarden.yaml lacks %q:\n%s", want, conf)
		}
	}
	sec := objects["Secret/pgw-pgwarden"].StringData
	for _, k := range []string{"PGWARDEN_AUDIT_KEY", "PGWARDEN_ADMIN_TOKEN"} {
		if sec[k] == "" {
			t.Errorf("the Secret lacks %s", k)
		}
	}
	if !strings.Contains(out, "key: PGWARDEN_ADMIN_TOKEN") {
		t.Error("the ServiceMonitor does not scrape with the admin token")
	}
}

package deploy

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case
	args string
}

// stage is one FROM and the instructions under it.
type stage struct {
	name, base string
	ins        []instruction
}

// parseDockerfile splits a Dockerfile into stages: enough of the syntax
// (comments, parser directives, backslash continuations) to check what
// the image must hold; the build itself is not run here (no container
// engine).
func parseDockerfile(t *testing.T, src string) (args map[string]string, stages []*stage) {
	t.Helper()
	args = map[string]string{}
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		start := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				continue
			}
			line = strings.TrimSuffix(line, "\\") + " " + next
		}
		cmd, rest, _ := strings.Cut(line, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(rest)}
		if !slices.Contains([]string{"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
			"VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}, in.cmd) {
			t.Fatalf("line %d: unknown instruction %q", start, cmd)
		}
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			st := &stage{base: f[0], name: fmt.Sprint(len(stages))}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				t.Fatalf("line %d: FROM %s", start, in.args)
			}
			stages = append(stages, st)
		case len(stages) == 0 && in.cmd == "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		case len(stages) == 0:
			t.Fatalf("line %d: %s before the first FROM", start, in.cmd)
		default:
			stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
		}
	}
	return args, stages
}

func (s *stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

func (s *stage) last(t *testing.T, cmd string) instruction {
	t.Helper()
	all := s.all(cmd)
	if len(all) == 0 {
		t.Fatalf("stage %s has no %s", s.name, cmd)
	}
	return all[len(all)-1]
}

// execForm decodes a JSON-array argument (CMD ["a", "b"]).
func execForm(t *testing.T, in instruction) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(in.args), &v); err != nil {
		t.Fatalf("line %d: %s %s is not in exec form: %v", in.line, in.cmd, in.args, err)
	}
	return v
}

// checkRuntimeStage checks what both images' final stage must do: run
// unprivileged, keep state on a volume, answer a health check with the
// binary's own probe, and start serve.
func checkRuntimeStage(t *testing.T, final *stage) {
	if !strings.Contains(final.base, "distroless") || !strings.Contains(final.base, "nonroot") {
		t.Errorf("final stage FROM %s: want a distroless nonroot image", final.base)
	}
	if !strings.Contains(final.base, "base-") {
		t.Errorf("final stage FROM %s: pgwarden is linked with cgo and needs glibc (distroless base, not static)", final.base)
	}
	user := final.last(t, "USER").args
	if uid, _, _ := strings.Cut(user, ":"); uid == "0" || uid == "root" || uid == "" {
		t.Errorf("final stage runs as %q", user)
	}
	if v := final.last(t, "VOLUME").args; !strings.Contains(v, "/var/lib/pgwarden") {
		t.Errorf("VOLUME %s: want /var/lib/pgwarden", v)
	}
	hc := final.last(t, "HEALTHCHECK")
	_, cmdPart, ok := strings.Cut(hc.args, "CMD ")
	if !ok {
		t.Fatalf("HEALTHCHECK %s has no CMD", hc.args)
	}
	probe := execForm(t, instruction{line: hc.line, cmd: "HEALTHCHECK", args: cmdPart})
	ep := execForm(t, final.last(t, "ENTRYPOINT"))
	if len(probe) < 2 || probe[0] != ep[0] || probe[1] != "health" {
		t.Errorf("HEALTHCHECK runs %q: want %s health (no shell or curl in the image)", probe, ep[0])
	}
	if cmd := execForm(t, final.last(t, "CMD")); len(cmd) == 0 || cmd[0] != "serve" {
		t.Errorf("CMD %q: want serve", cmd)
	}
	var env []string
	for _, in := range final.all("ENV") {
		env = append(env, in.args)
	}
	if !slices.Contains(env, "PGWARDEN_CONFIG=/etc/pgwarden/pgwarden.yaml") {
		t.Errorf("ENV %q: want PGWARDEN_CONFIG=/etc/pgwarden/pgwarden.yaml", env)
	}
	for _, in := range final.all("RUN") {
		t.Errorf("line %d: RUN in the final stage, which has no shell", in.line)
	}
}

func TestDockerfile(t *testing.T) {
	args, stages := parseDockerfile(t, readFile(t, "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("%d stages: want a build stage and a runtime stage", len(stages))
	}
	names := map[string]*stage{}
	for _, s := range stages {
		names[s.name] = s
	}
	build, final := names["build"], stages[len(stages)-1]
	if build == nil || final.name != "pgwarden" || names["alertsink"] == nil {
		t.Fatalf("stages %v: want build, alertsink, and pgwarden last (the default target)", names)
	}
	if want := goDirective(t); args["GO_VERSION"] != want {
		t.Errorf("ARG GO_VERSION=%s, go.mod says go %s", args["GO_VERSION"], want)
	}
	if !strings.HasPrefix(build.base, "golang:${GO_VERSION}-bookworm") {
		t.Errorf("build stage FROM %s", build.base)
	}
	var runs string
	for _, in := range build.all("RUN") {
		runs += in.args + "\n"
	}
	for _, want := range []string{"CGO_ENABLED=1 go build", "./cmd/pgwarden", "./test/cmd/alertsink",
		"internal/buildinfo.version=${VERSION}", "internal/buildinfo.commit=${COMMIT}", "internal/buildinfo.date=${DATE}"} {
		if !strings.Contains(runs, want) {
			t.Errorf("the build stage's RUN lacks %q", want)
		}
	}
	for _, s := range stages {
		for _, in := range s.all("COPY") {
			for _, f := range strings.Fields(in.args) {
				if from, ok := strings.CutPrefix(f, "--from="); ok && (names[from] == nil || names[from] == s) {
					t.Errorf("line %d: COPY --from=%s names no earlier stage", in.line, from)
				}
			}
		}
	}
	checkRuntimeStage(t, final)
	// The ignore file beside the Dockerfile must keep what the build reads.
	for _, line := range strings.Split(readFile(t, "Dockerfile.dockerignore"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, needed := range []string{"go.mod", "go.sum", "LICENSE", "cmd/pgwarden/main.go", "test/cmd/alertsink/main.go", "internal/buildinfo/buildinfo.go"} {
			if ok, _ := filepath.Match(line, needed); ok || strings.HasPrefix(needed, strings.TrimSuffix(line, "/")+"/") {
				t.Errorf("Dockerfile.dockerignore: %q leaves %s out of the build", line, needed)
			}
		}
	}
	if u := names["alertsink"].last(t, "USER").args; strings.HasPrefix(u, "0") || u == "root" {
		t.Errorf("alertsink runs as %q", u)
	}
}

func TestDockerfileRelease(t *testing.T) {
	_, stages := parseDockerfile(t, readFile(t, "Dockerfile.release"))
	if len(stages) != 1 {
		t.Fatalf("%d stages: the release image wraps a prebuilt binary", len(stages))
	}
	final := stages[0]
	checkRuntimeStage(t, final)
	copies := ""
	for _, in := range final.all("COPY") {
		copies += in.args + "\n"
	}
	if !strings.Contains(copies, "${TARGETPLATFORM}/pgwarden /usr/local/bin/pgwarden") {
		t.Errorf("COPY %q: GoReleaser's dockers_v2 puts each platform's binary under $TARGETPLATFORM", copies)
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// moduleRoot returns the directory of the main module (pgwarden's go.mod).
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run compat from inside the pgwarden module (go run ./test/compat)")
	}
	return filepath.Dir(gomod), nil
}

// moduleDir returns the module cache directory of the version of module that
// the main module requires, downloading it if needed.
func moduleDir(ctx context.Context, repo, module string) (string, error) {
	for attempt := 0; ; attempt++ {
		cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", module)
		cmd.Dir = repo
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("go list -m %s: %w", module, err)
		}
		if dir := strings.TrimSpace(string(out)); dir != "" {
			return dir, nil
		}
		if attempt > 0 {
			return "", fmt.Errorf("module %s is not in the module cache", module)
		}
		if err := goCmd(ctx, repo, nil, "mod", "download", module); err != nil {
			return "", err
		}
	}
}

// goCmd runs the go command in dir and returns its output in the error when it
// fails. env nil means the current environment.
func goCmd(ctx context.Context, dir string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = dir, env
	setGroup(cmd)
	out, err := cmd.CombinedOutput()
	killGroup(cmd)
	if err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, tail(string(out), 40))
	}
	return nil
}

// setGroup runs cmd in a process group of its own, ended as a whole when ctx
// is cancelled (SIGTERM, then SIGKILL for the leader after a grace period), and
// sent SIGTERM if compat dies first.
func setGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
}

// killGroup kills what is left of cmd's process group once cmd has exited:
// test binaries that go test left behind.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// testEnv returns the environment for go test in the pgx copy: the current one
// without any PG* variable (libpq defaults, PGX_TEST_*, PGWARDEN_*), with
// -mod=mod added to GOFLAGS (the copy's go.sum suffices; test dependencies come
// from the module cache or the module proxy), GOWORK off, and vars.
func testEnv(vars map[string]string) []string {
	var env []string
	goflags := "-mod=mod"
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "PG"), k == "GOWORK":
		case k == "GOFLAGS":
			if v != "" {
				goflags = v + " " + goflags
			}
		default:
			env = append(env, kv)
		}
	}
	env = append(env, "GOFLAGS="+goflags, "GOWORK=off")
	for _, k := range sortedKeys(vars) {
		env = append(env, k+"="+vars[k])
	}
	return env
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// copyTree copies the directory src to dst, making everything writable (the
// module cache is read-only).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			return copyFile(path, target, fi.Mode().Perm()|0o200)
		default:
			return nil // no symlinks or devices in a module zip
		}
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// runSuite runs go test -json in the pgx copy with vars set, keeps the event
// stream in jsonPath and collects the results.
func runSuite(ctx context.Context, o *options, target, dir string, vars map[string]string, jsonPath string) (*runResult, error) {
	args := []string{"test", "-json", "-count=1", "-p", strconv.Itoa(o.procs), "-timeout", o.timeout.String()}
	if o.parallel > 0 {
		args = append(args, "-parallel", strconv.Itoa(o.parallel))
	}
	if o.run != "" {
		args = append(args, "-run", o.run)
	}
	args = append(args, o.packages...)

	jf, err := os.Create(jsonPath)
	if err != nil {
		return nil, err
	}
	defer jf.Close()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = dir, testEnv(vars)
	cmd.Stderr = &stderr
	setGroup(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	r := newRunResult(target, o.keepTail)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		jf.Write(line)
		jf.Write([]byte{'\n'})
		if p := r.add(line); p != nil {
			log.Printf("%-8s %s", target, p.summary())
		} else if o.verbose {
			if s := r.lastTestLine(); s != "" {
				log.Printf("%-8s %s", target, s)
			}
		}
	}
	scanErr := sc.Err()
	if scanErr != nil {
		// Keep draining so that go test does not block on a full pipe.
		_, _ = io.Copy(io.Discard, stdout)
	}
	waitErr := cmd.Wait()
	killGroup(cmd)
	r.elapsed = time.Since(start)
	r.finish()
	if stderr.Len() > 0 {
		_ = os.WriteFile(strings.TrimSuffix(jsonPath, ".json")+".stderr", stderr.Bytes(), 0o644)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if scanErr != nil {
		return nil, fmt.Errorf("read go test output: %w", scanErr)
	}
	var ee *exec.ExitError
	switch {
	case waitErr == nil:
	case errors.As(waitErr, &ee) && ee.ExitCode() == 1:
		r.exitStatus = "exit status 1 (test failures)"
	default:
		return nil, fmt.Errorf("go test: %w\n%s", waitErr, tail(stderr.String(), 40))
	}
	if len(r.pkgs) == 0 {
		return nil, fmt.Errorf("go test reported no package\n%s", tail(stderr.String(), 40))
	}
	return r, nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

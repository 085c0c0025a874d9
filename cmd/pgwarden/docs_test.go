package main

import (
	"bytes"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/config"
)

// TestConfigurationDocumented: every key of the configuration file (dotted
// for nested sections, as client_certs.rules.target) and every flag of
// pgwarden serve appears, in backquotes, in docs/configuration.md.
func TestConfigurationDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)

	keys := yamlKeys(reflect.TypeFor[config.Config](), "")
	if len(keys) < 50 {
		t.Fatalf("found only %d configuration keys: %v", len(keys), keys)
	}
	for _, k := range keys {
		if !strings.Contains(doc, "`"+k+"`") {
			t.Errorf("configuration key %s is not in docs/configuration.md", k)
		}
	}

	flags := serveFlags(t)
	if len(flags) < 40 {
		t.Fatalf("found only %d flags of pgwarden serve: %v", len(flags), flags)
	}
	for _, f := range flags {
		if !strings.Contains(doc, "`--"+f+"`") {
			t.Errorf("flag --%s of pgwarden serve is not in docs/configuration.md", f)
		}
	}
}

// yamlKeys lists the keys a YAML decoder accepts for t, section keys
// included: a nested struct's keys are prefixed with its own and a dot,
// the elements of a list of structs take the list's key, and a map of
// structs takes "<name>" for the map's key.
func yamlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		key := prefix + name
		keys = append(keys, key)
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Map {
			key += ".<name>"
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			keys = append(keys, yamlKeys(ft, key+".")...)
		}
	}
	return keys
}

// serveFlags lists the flags pgwarden serve --help prints.
func serveFlags(t *testing.T) []string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("pgwarden serve --help: exit %d: %s", code, stderr.String())
	}
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^ +--([a-z0-9-]+)`).FindAllStringSubmatch(stderr.String(), -1) {
		flags = append(flags, m[1])
	}
	return flags
}

package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	toolchain := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/pgwarden/pgwarden", Version: "v0.3.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	tests := []struct {
		name                  string
		version, commit, date string
		bi                    *debug.BuildInfo
		want                  Info
	}{
		{"linker wins", "v1.2.3", "abc", "2026-12-06T09:00:00Z", toolchain,
			Info{Version: "v1.2.3", Commit: "abc", Date: "2026-12-06T09:00:00Z", GoVersion: "go1.26.8", Modified: true}},
		{"go install", "", "", "", toolchain,
			Info{Version: "v0.3.0", Commit: "0123456789abcdef0123456789abcdef01234567", Date: "2026-12-01T10:00:00Z", GoVersion: "go1.26.8", Modified: true}},
		{"go build in a checkout without VCS stamp", "", "", "",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			Info{Version: "dev", Commit: "unknown", Date: "unknown", GoVersion: "go1.26.8"}},
		{"no build info", "", "", "", nil,
			Info{Version: "dev", Commit: "unknown", Date: "unknown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolve(tt.version, tt.commit, tt.date, tt.bi)
			if tt.want.GoVersion == "" {
				tt.want.GoVersion = got.GoVersion // the running toolchain's
			}
			tt.want.Platform = got.Platform
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	in := Info{Version: "v1.2.3", Commit: "0123456789abcdef0123", Date: "2026-12-06T09:00:00Z", GoVersion: "go1.26.8", Platform: "linux/arm64"}
	want := "pgwarden v1.2.3 (commit 0123456789ab, built 2026-12-06T09:00:00Z, go1.26.8 linux/arm64)"
	if got := in.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	in.Modified = true
	if got := in.String(); !strings.Contains(got, "0123456789ab, modified,") {
		t.Errorf("modified build: %q", got)
	}
}

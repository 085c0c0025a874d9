// Package buildinfo tells which pgwarden this is: the version, commit and
// build date stamped in by the linker (make build, the release builds), or
// else what the Go toolchain recorded in the binary, so that a binary built
// by `go install` still names its module version, commit and Go version.
//
// The release build sets, with -ldflags:
//
//	-X github.com/pgwarden/pgwarden/internal/buildinfo.version=v1.2.3
//	-X github.com/pgwarden/pgwarden/internal/buildinfo.commit=<sha>
//	-X github.com/pgwarden/pgwarden/internal/buildinfo.date=<RFC 3339>
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// Set by the linker; empty in a plain go build.
var (
	version string
	commit  string
	date    string
)

// Info describes a build. Fields that nothing recorded are "unknown",
// except Version, which is "dev" then.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	// Modified is true when the build's source tree had changes not
	// committed (known only from the Go toolchain's VCS stamp).
	Modified bool `json:"modified,omitempty"`
}

var get = sync.OnceValue(func() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, commit, date, bi)
})

// Get returns this binary's build information.
func Get() Info { return get() }

// resolve prefers the linker's values and falls back on the toolchain's.
func resolve(version, commit, date string, bi *debug.BuildInfo) Info {
	in := Info{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if in.Commit == "" {
					in.Commit = s.Value
				}
			case "vcs.time":
				if in.Date == "" {
					in.Date = s.Value
				}
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if in.Version == "" {
		in.Version = "dev"
	}
	if in.Commit == "" {
		in.Commit = "unknown"
	}
	if in.Date == "" {
		in.Date = "unknown"
	}
	return in
}

// ShortCommit is the commit's first 12 characters.
func (i Info) ShortCommit() string {
	if len(i.Commit) > 12 {
		return i.Commit[:12]
	}
	return i.Commit
}

// String is the one line `pgwarden --version` prints.
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pgwarden %s (commit %s", i.Version, i.ShortCommit())
	if i.Modified {
		b.WriteString(", modified")
	}
	fmt.Fprintf(&b, ", built %s, %s %s)", i.Date, i.GoVersion, i.Platform)
	return b.String()
}

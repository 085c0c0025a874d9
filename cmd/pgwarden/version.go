package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/pgwarden/pgwarden/internal/buildinfo"
)

const versionUsage = `Usage: pgwarden version [--json]

Prints the version, commit, build date, Go version and platform of this
binary: stamped at build time (make build, release packages), else taken
from what the Go toolchain recorded (go install). pgwarden --version and
pgwarden -v print the same line.

Flags:
`

// runVersion prints the build information, as one line or as JSON.
func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, versionUsage); fs.PrintDefaults() }
	asJSON := fs.Bool("json", false, "print the build information as a JSON object")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "pgwarden version: unexpected argument %q\n", pos[0])
		return errUsage
	}
	bi := buildinfo.Get()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(bi)
	}
	_, err = fmt.Fprintln(stdout, bi.String())
	return err
}

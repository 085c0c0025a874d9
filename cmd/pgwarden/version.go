package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgwarden/pgwarden/internal/buildinfo"
)

// versionCommand prints the build information, as one line or as JSON.
func versionCommand() *cobra.Command {
	c := &cobra.Command{Use: "version [--json]", Short: "print the version",
		Long: `Prints the version, commit, build date, Go version and platform of this
binary: stamped at build time (make build, release packages), else taken
from what the Go toolchain recorded (go install). pgwarden --version and
pgwarden -v print the same line.
`}
	asJSON := c.Flags().Bool("json", false, "print the build information as a JSON object")
	c.RunE = func(c *cobra.Command, args []string) error {
		if err := noArgs(c, args); err != nil {
			return err
		}
		bi := buildinfo.Get()
		if *asJSON {
			enc := json.NewEncoder(c.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(bi)
		}
		_, err := fmt.Fprintln(c.OutOrStdout(), bi.String())
		return err
	}
	return c
}

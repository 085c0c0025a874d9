package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// tree is a program with a group of two commands and a failing command;
// got records what the add command was given.
func tree(stdout, stderr *bytes.Buffer, got *[]string) *cobra.Command {
	add := &cobra.Command{Use: "add NAME [--note TEXT]", Short: "add a thing",
		Long: "Adds a thing to the list.\n\n"}
	note := add.Flags().String("note", "", "a `text` kept with it")
	add.RunE = func(c *cobra.Command, args []string) error {
		if len(args) != 1 {
			return ErrUsage
		}
		*got = append(args, *note)
		return nil
	}
	list := &cobra.Command{Use: "list", Short: "list the things", RunE: func(*cobra.Command, []string) error { return nil }}
	fail := &cobra.Command{Use: "fail", Short: "fail", RunE: func(*cobra.Command, []string) error { return errors.New("it broke") }}
	root := &cobra.Command{Use: "prog", Long: "prog: a program"}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(Group("things [command]", "manage things", "Things are kept in a list.\n", add, list), fail)
	Setup(root)
	return root
}

func TestExecute(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr []string
		added          string
	}{
		{[]string{"--help"}, 0, []string{"prog: a program\n\nUsage: prog things [command]", "manage things", "prog fail"}, nil, ""},
		{[]string{"things"}, 2, nil, []string{"Usage: prog things add NAME [--note TEXT]", "add a thing", "Things are kept in a list."}, ""},
		{[]string{"things", "help"}, 0, nil, []string{"Usage: prog things add"}, ""},
		{[]string{"things", "frob", "--note", "x"}, 2, nil, []string{`prog things: unknown subcommand "frob"`}, ""},
		{[]string{"things", "add", "--help"}, 0, nil, []string{"Usage: prog things add NAME [--note TEXT]\n\nAdds a thing to the list.\n\nFlags:\n", "--note text", "Commands of prog things:\n  prog things add", "prog things list"}, ""},
		{[]string{"things", "list", "-h"}, 0, nil, []string{"Usage: prog things list\n\nList the things.\n"}, ""},
		{[]string{"things", "add", "x", "--note", "n"}, 0, nil, nil, "x n"},
		{[]string{"things", "add", "-note=n", "x"}, 0, nil, nil, "x n"},
		{[]string{"things", "add", "--nope"}, 2, nil, []string{"prog things add: unknown flag: --nope", "Run 'prog things add --help'"}, ""},
		{[]string{"things", "add"}, 2, nil, nil, ""},
		{[]string{"fail"}, 1, nil, []string{"prog: it broke\n"}, ""},
	} {
		var stdout, stderr bytes.Buffer
		var got []string
		code := Execute(tree(&stdout, &stderr, &got), tc.args)
		ok := code == tc.code && strings.Join(got, " ") == tc.added
		for _, s := range tc.stdout {
			ok = ok && strings.Contains(stdout.String(), s)
		}
		for _, s := range tc.stderr {
			ok = ok && strings.Contains(stderr.String(), s)
		}
		if !ok {
			t.Errorf("%q: exit %d, added %q\nstdout:\n%s\nstderr:\n%s\nwant exit %d, added %q, stdout with %q, stderr with %q",
				tc.args, code, got, stdout.String(), stderr.String(), tc.code, tc.added, tc.stdout, tc.stderr)
		}
	}
}

// TestGoStyleFlags: -name becomes --name for the flags of the command
// run, and nothing else changes.
func TestGoStyleFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	var got []string
	root := tree(&stdout, &stderr, &got)
	in := []string{"things", "add", "-note", "-x", "-1", "-help", "--note", "--", "-note"}
	want := []string{"things", "add", "--note", "-x", "-1", "--help", "--note", "--", "-note"}
	if out := GoStyleFlags(root, in); strings.Join(out, " ") != strings.Join(want, " ") {
		t.Errorf("GoStyleFlags(%q) = %q; want %q", in, out, want)
	}
}

package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// ReadNewPassword asks for name's new password: twice without echo when
// in is a terminal, or one line otherwise (scripts, tests). The prompts
// go to prompt.
func ReadNewPassword(name string, in *os.File, prompt io.Writer) (string, error) {
	fd := int(in.Fd())
	if term.IsTerminal(fd) {
		fmt.Fprintf(prompt, "New password for %s: ", name)
		first, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return "", err
		}
		fmt.Fprint(prompt, "Enter it again: ")
		again, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return "", err
		}
		if string(first) != string(again) {
			return "", errors.New("the passwords do not match")
		}
		if len(first) == 0 {
			return "", errors.New("empty password")
		}
		return string(first), nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", fmt.Errorf("no password on standard input: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("empty password")
	}
	return line, nil
}

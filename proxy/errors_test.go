package proxy

import (
	"errors"
	"testing"
)

// TestWireErrorSaysItOnce: an error made from its cause does not repeat
// it in the logs; one with a message of its own keeps the cause.
func TestWireErrorSaysItOnce(t *testing.T) {
	cause := errors.New("invalid length of startup packet: 1195725856")
	for _, c := range []struct {
		e    *wireError
		want string
	}{
		{fatalf(codeProtocolViolation, cause, "%v", cause), "invalid length of startup packet: 1195725856"},
		{fatalf(codeProtocolViolation, cause, "startup failed: %v", cause), "startup failed: invalid length of startup packet: 1195725856"},
		{fatalf(codeProtocolViolation, cause, "invalid startup message"), "invalid startup message: invalid length of startup packet: 1195725856"},
		{fatalf(codeProtocolViolation, nil, "no cause"), "no cause"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
}

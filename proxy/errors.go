package proxy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATE codes pgwarden sends itself.
const (
	codeInsufficientPrivilege = "42501" // a block or a refused session
	codeTooManyConnections    = "53300"
	codeProtocolViolation     = "08P01"
	codeConnectionFailure     = "08006"
	codeCannotConnectNow      = "57P03"
	codeAdminShutdown         = "57P01"
	codeIdleSessionTimeout    = "57P05"
	codeInvalidAuthorization  = "28000"
	codeFeatureNotSupported   = "0A000"
	codeInternalError         = "XX000"
)

// wireError is an error the client is told about in an ErrorResponse.
// Errors get a wireError where they arise; they are encoded in one place,
// errorFrame.
type wireError struct {
	Severity string // "ERROR" or "FATAL"
	Code     string
	Message  string // without the "pgwarden: " prefix
	Detail   string
	Err      error // cause, for logs only
}

func (e *wireError) Error() string {
	if e.Err != nil {
		// A message made from its cause (fatalf(code, err, "%v", err))
		// is not said twice.
		if cause := e.Err.Error(); !strings.Contains(e.Message, cause) {
			return e.Message + ": " + cause
		}
	}
	return e.Message
}

func (e *wireError) Unwrap() error { return e.Err }

func fatalf(code string, cause error, format string, args ...any) *wireError {
	return &wireError{Severity: "FATAL", Code: code, Message: fmt.Sprintf(format, args...), Err: cause}
}

// errorFrame encodes e as an ErrorResponse whose message starts "pgwarden: ".
func errorFrame(e *wireError) []byte {
	sev := e.Severity
	if sev == "" {
		sev = "ERROR"
	}
	msg := &pgproto3.ErrorResponse{
		Severity:            sev,
		SeverityUnlocalized: sev,
		Code:                e.Code,
		Message:             "pgwarden: " + e.Message,
		Detail:              e.Detail,
	}
	b, err := msg.Encode(nil)
	if err != nil {
		// Encoding fails only for impossible lengths.
		panic(err)
	}
	return b
}

// asWireError finds the wireError in err's chain.
func asWireError(err error) (*wireError, bool) {
	var we *wireError
	ok := errors.As(err, &we)
	return we, ok
}

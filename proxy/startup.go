package proxy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Startup-phase request codes
// (https://www.postgresql.org/docs/current/protocol-message-formats.html).
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102

	// maxStartupPacketLen is MAX_STARTUP_PACKET_LENGTH from PostgreSQL.
	maxStartupPacketLen = 10000
)

// startupMessage is a StartupMessage of protocol major version 3, any minor
// version; the upstream server negotiates the minor version itself.
type startupMessage struct {
	ProtocolVersion uint32
	Parameters      map[string]string
	order           []string // parameter names in the order sent
}

// encode re-encodes the message for the upstream server.
func (m *startupMessage) encode() []byte {
	b := make([]byte, 8, 64)
	binary.BigEndian.PutUint32(b[4:], m.ProtocolVersion)
	for _, k := range m.order {
		b = append(b, k...)
		b = append(b, 0)
		b = append(b, m.Parameters[k]...)
		b = append(b, 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// readStartupPacket reads one packet of the startup phase: an SSLRequest,
// GSSENCRequest, CancelRequest or StartupMessage. It reads exactly the packet,
// never ahead: bytes after an SSLRequest belong to the TLS handshake.
func readStartupPacket(r io.Reader) (any, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[:]))
	if n < 8 || n > maxStartupPacketLen {
		return nil, fmt.Errorf("invalid length of startup packet: %d", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return parseStartupPacket(body)
}

// parseStartupPacket decodes the body of a startup-phase packet.
func parseStartupPacket(body []byte) (any, error) {
	code := binary.BigEndian.Uint32(body)
	switch code {
	case sslRequestCode:
		if len(body) != 4 {
			return nil, fmt.Errorf("invalid SSLRequest length %d", len(body)+4)
		}
		return &pgproto3.SSLRequest{}, nil
	case gssEncRequestCode:
		if len(body) != 4 {
			return nil, fmt.Errorf("invalid GSSENCRequest length %d", len(body)+4)
		}
		return &pgproto3.GSSEncRequest{}, nil
	case cancelRequestCode:
		// Protocol 3.2 allows secret keys of up to 256 bytes.
		if len(body) < 12 || len(body) > 8+256 {
			return nil, fmt.Errorf("invalid CancelRequest length %d", len(body)+4)
		}
		return &pgproto3.CancelRequest{
			ProcessID: binary.BigEndian.Uint32(body[4:]),
			SecretKey: bytes.Clone(body[8:]),
		}, nil
	}
	if major := code >> 16; major != 3 {
		return nil, &wireError{Severity: "FATAL", Code: codeFeatureNotSupported,
			Message: fmt.Sprintf("unsupported frontend protocol %d.%d: pgwarden supports 3.0 and later minor versions", major, code&0xffff)}
	}
	m := &startupMessage{ProtocolVersion: code, Parameters: make(map[string]string)}
	rest := body[4:]
	for {
		key, r, err := cstring(rest)
		if err != nil {
			return nil, fmt.Errorf("malformed startup packet")
		}
		if len(key) == 0 {
			if len(r) != 0 {
				return nil, fmt.Errorf("malformed startup packet: data after the terminator")
			}
			break
		}
		val, r2, err := cstring(r)
		if err != nil {
			return nil, fmt.Errorf("malformed startup packet")
		}
		k := string(key)
		if _, dup := m.Parameters[k]; !dup {
			m.order = append(m.order, k)
		}
		m.Parameters[k] = string(val)
		rest = r2
	}
	if m.Parameters["user"] == "" {
		return nil, &wireError{Severity: "FATAL", Code: "28000", Message: "no PostgreSQL user name specified in startup packet"}
	}
	return m, nil
}

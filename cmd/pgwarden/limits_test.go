package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

// TestServeLimitFlags: --max-startup-per-address and --max-message-size
// reach the proxy.
func TestServeLimitFlags(t *testing.T) {
	c := pgtest.Shared(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	_, stderr := startBinary(t, nil, "serve", "--listen", listen, "--upstream", "postgres://"+c.Addr(),
		"--max-startup-per-address", "2", "--max-message-size", "1048576")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := connectThrough(t, ctx, c, listen, stderr)
	defer conn.Close(ctx)

	// Of three silent connections from one address, one is refused.
	refused := 0
	for range 3 {
		silent, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		silent.SetDeadline(time.Now().Add(time.Second))
		m, err := pgproto3.NewFrontend(silent, silent).Receive()
		if e, ok := m.(*pgproto3.ErrorResponse); err == nil && ok && e.Code == "53300" {
			refused++
		}
	}
	if refused != 1 {
		t.Errorf("%d of 3 silent connections from one address refused, want 1", refused)
	}

	_, err = conn.Exec(ctx, "SELECT length($1::text)", strings.Repeat("x", 2<<20))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "54000" || !strings.Contains(pgErr.Message, fmt.Sprintf("limit of %d bytes", 1<<20)) {
		t.Errorf("a 2 MiB query with --max-message-size 1048576: %v, want 54000", err)
	}
}

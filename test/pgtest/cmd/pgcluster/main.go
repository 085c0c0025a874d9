// Command pgcluster runs a throwaway PostgreSQL cluster for scripts (benchmarks,
// the compatibility run, the demo). It prints shell export lines describing the
// cluster on stdout, in a single write once the cluster accepts connections, and
// keeps it running until SIGINT or SIGTERM, or with --stdin until stdin reaches EOF.
// Then it stops the cluster and removes its directory.
//
//	pgcluster >cluster.env & pid=$!
//	until [ -s cluster.env ]; do sleep 0.1; done
//	. ./cluster.env
//	...
//	kill $pid; wait $pid
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/pgwarden/pgwarden/test/pgtest"
)

const usage = `usage: pgcluster [--stdin]

Starts a throwaway PostgreSQL cluster (see package test/pgtest), prints

  export PGWARDEN_TEST_DSN=...   superuser URL; makes pgtest.Main adopt this cluster
  export PGHOST=... PGPORT=... PGDATABASE=... PGUSER=postgres
  export PGWARDEN_TEST_CAFILE=...  CA certificate the server's certificate chains to

on stdout once the cluster accepts connections, then waits. On SIGINT or SIGTERM
it stops the cluster and removes its directory. Progress goes to stderr.

Flags:
`

func main() {
	log.SetFlags(0)
	log.SetPrefix("pgcluster: ")
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), usage)
		flag.PrintDefaults()
	}
	untilEOF := flag.Bool("stdin", false, "also stop when stdin reaches EOF (when the parent script exits)")
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*untilEOF); err != nil {
		log.Fatal(err)
	}
}

func run(untilEOF bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c, err := pgtest.Start(ctx, pgtest.Options{Logf: log.Printf})
	if err != nil {
		return err
	}
	if untilEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}

	var b strings.Builder
	for _, kv := range [][2]string{
		{"PGWARDEN_TEST_DSN", c.DSN(pgtest.SuperUser)},
		{"PGHOST", c.Host},
		{"PGPORT", strconv.Itoa(c.Port)},
		{"PGDATABASE", c.Database},
		{"PGUSER", pgtest.SuperUser},
		{"PGWARDEN_TEST_CAFILE", c.CAFile},
	} {
		fmt.Fprintf(&b, "export %s=%s\n", kv[0], shellQuote(kv[1]))
	}
	_, err = io.WriteString(os.Stdout, b.String())

	if err == nil {
		log.Printf("cluster at %s ready (dir %s)", c.Addr(), c.Dir)
		<-ctx.Done()
		log.Printf("stopping")
	}
	if serr := c.Stop(); serr != nil {
		return serr
	}
	return err
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

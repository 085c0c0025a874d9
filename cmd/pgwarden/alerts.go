package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"
	"time"
)

const alertsUsage = `Usage:
  pgwarden alerts list [--employee NAME] [--all] [--limit N] [--admin URL]
                                            security's queue (unacknowledged unless --all)
  pgwarden alerts ack ID [--by NAME] [--admin URL]
                                            acknowledge an alert

These talk to a running pgwarden's admin API (serve --admin-listen), with the
bearer token from --admin-token-file or PGWARDEN_ADMIN_TOKEN.
`

func runAlerts(args []string, stdout, stderr io.Writer) error {
	sub, rest, err := subcommand("alerts", alertsUsage, args, stderr, "list", "ack")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("alerts "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, alertsUsage); fs.PrintDefaults() }
	base, tokenFile := adminFlags(fs)
	employee := fs.String("employee", "", "only this employee's alerts")
	all := fs.Bool("all", false, "acknowledged alerts too")
	limit := fs.Int("limit", 50, "at most this many")
	by := fs.String("by", "cli", "who acknowledges")
	pos, err := parseInterleaved(fs, rest)
	if err != nil {
		return err
	}
	c, err := newAdminClient(*base, *tokenFile)
	if err != nil {
		return err
	}
	if sub == "ack" {
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "pgwarden alerts ack: want exactly one ID")
			return errUsage
		}
		if err := c.do("POST", "/v1/alerts/"+url.PathEscape(pos[0])+"/ack?by="+url.QueryEscape(*by), nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "acknowledged %s\n", pos[0])
		return nil
	}
	q := url.Values{"limit": {fmt.Sprint(*limit)}}
	if *employee != "" {
		q.Set("employee", *employee)
	}
	if !*all {
		q.Set("unacked", "1")
	}
	var list []struct {
		ID       string    `json:"id"`
		Time     time.Time `json:"time"`
		Employee string    `json:"employee"`
		Action   string    `json:"action"`
		Rule     string    `json:"rule"`
		Reason   string    `json:"reason"`
		AckedBy  string    `json:"acked_by"`
	}
	if err := c.do("GET", "/v1/alerts?"+q.Encode(), &list); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tEMPLOYEE\tACTION\tRULE\tACKED BY\tREASON")
	for _, a := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Time.UTC().Format(time.RFC3339), a.Employee, a.Action, a.Rule, orDash(a.AckedBy), a.Reason)
	}
	return tw.Flush()
}

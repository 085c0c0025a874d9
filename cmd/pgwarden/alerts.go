package main

import (
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgwarden/pgwarden/admin"
	"github.com/pgwarden/pgwarden/internal/cli"
	"github.com/pgwarden/pgwarden/state/alertlog"
)

func alertsCommand() *cobra.Command {
	list := &cobra.Command{Use: "list [--employee NAME] [--all] [--limit N] [--admin URL]", Short: "security's queue (unacknowledged unless --all)"}
	var o alertsOptions
	list.Flags().StringVar(&o.employee, "employee", "", "only this employee's alerts")
	list.Flags().BoolVar(&o.all, "all", false, "acknowledged alerts too")
	list.Flags().IntVar(&o.limit, "limit", 50, "at most this many")
	ack := &cobra.Command{Use: "ack ID [--note TEXT] [--admin URL]", Short: "acknowledge an alert (recorded with the token's name)"}
	ack.Flags().StringVar(&o.note, "note", "", "what you found, for the audit trail")
	ack.Flags().String("by", "", "")
	ack.Flags().MarkDeprecated("by", "the acknowledgement names the admin token's holder (pgwarden token --name)")
	run := func(c *cobra.Command, client *admin.Client, pos []string) error { return runAlerts(c, client, pos, o) }
	return cli.Group("alerts [command]", "security's alert queue: list, acknowledge (through the admin API)", adminAPINote,
		adminCommands(run, list, ack)...)
}

// alertsOptions are the flags of pgwarden alerts.
type alertsOptions struct {
	employee, note string
	all            bool
	limit          int
}

func runAlerts(cmd *cobra.Command, c *admin.Client, pos []string, o alertsOptions) error {
	stdout, sub := cmd.OutOrStdout(), cmd.Name()
	if sub == "ack" {
		if len(pos) != 1 {
			return cli.Usagef(cmd, "want exactly one ID")
		}
		if err := c.Do(cmd.Context(), "POST", "/v1/alerts/"+url.PathEscape(pos[0])+"/ack?reason="+url.QueryEscape(o.note), nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "acknowledged %s\n", pos[0])
		return nil
	}
	q := url.Values{"limit": {fmt.Sprint(o.limit)}}
	if o.employee != "" {
		q.Set("employee", o.employee)
	}
	if !o.all {
		q.Set("unacked", "1")
	}
	var list []alertlog.Entry
	if err := c.Do(cmd.Context(), "GET", "/v1/alerts?"+q.Encode(), &list); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tEMPLOYEE\tACTION\tRULE\tACKED BY\tREASON")
	for _, a := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Time.UTC().Format(time.RFC3339), a.Employee, a.Action, a.Rule, orDash(a.AckedBy), a.Reason)
	}
	return tw.Flush()
}

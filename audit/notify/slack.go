package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// SlackConfig configures a Slack sink.
type SlackConfig struct {
	Name    string // name of the sink (its outbox queue); default "slack"
	URL     string // incoming webhook URL; it is a secret and never logged
	Timeout time.Duration
	Client  *http.Client // as WebhookConfig.Client
	// HoldLinks, when set, gives the approve and deny links of a held
	// statement's hold (Alert.HoldID), valid until its deadline: the
	// message offers them. An error leaves them out.
	HoldLinks func(id string, deadline time.Time) (approve, deny string, err error)
}

// Slack posts a readable summary of each alert to a Slack-compatible
// incoming webhook: a "text" fallback line and Block Kit "blocks". Status
// codes are handled as for Webhook.
type Slack struct {
	name  string
	post  httpPoster
	links func(id string, deadline time.Time) (approve, deny string, err error)
}

// NewSlack returns a Slack sink.
func NewSlack(cfg SlackConfig) (*Slack, error) {
	p, err := newHTTPPoster(cfg.URL, cfg.Timeout, cfg.Client)
	if err != nil {
		return nil, fmt.Errorf("notify: slack: %w", err)
	}
	s := &Slack{name: cfg.Name, post: p, links: cfg.HoldLinks}
	if s.name == "" {
		s.name = "slack"
	}
	return s, nil
}

// Name implements Sink.
func (s *Slack) Name() string { return s.name }

// Deliver implements Sink.
func (s *Slack) Deliver(ctx context.Context, a Alert) error {
	m := slackMessage(a)
	if a.HoldID != "" && s.links != nil {
		if approve, deny, err := s.links(a.HoldID, a.HoldDeadline); err == nil {
			m = withHoldLinks(m, a, approve, deny)
		}
	}
	body, err := json.Marshal(m)
	if err != nil {
		return Permanent(fmt.Errorf("notify: slack: encoding alert %s: %w", a.ID, err))
	}
	h := make(http.Header)
	h.Set("Content-Type", "application/json")
	if err := s.post.do(ctx, h, body); err != nil {
		return fmt.Errorf("notify: slack: %w", err)
	}
	return nil
}

type slackText struct {
	Type string `json:"type"` // "plain_text" or "mrkdwn"
	Text string `json:"text"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackBody struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

// slackMessage renders an alert: a header ("pgwarden: BLOCK alice"), the
// reason, a fields section (observed vs limit, rule, session, client, ...)
// and a context line with the alert ID and time.
func slackMessage(a Alert) slackBody {
	action := strings.ToUpper(orDash(a.Action))
	if a.Shadow && !strings.Contains(strings.ToLower(a.Action), "would") {
		action += " (shadow)"
	}
	who := orDash(a.Employee)
	reason := a.Reason
	if reason == "" {
		reason = fmt.Sprintf("%s: %s", a.Action, who)
	}
	rule := a.Rule
	if rule == "" {
		rule = "(norm)"
	}
	observed := fmt.Sprintf("%s / %s", formatInt(a.Observed), formatInt(a.Limit))
	if a.Measure != "" {
		observed += " " + a.Measure
	}
	if a.Scope != "" {
		observed += " per " + a.Scope
	}
	client := orDash(a.ClientAddr)
	if a.Application != "" {
		client += " (" + a.Application + ")"
	}

	text := fmt.Sprintf("[%s] %s: %s (observed %s, limit %s; rule %s; session %s; client %s)",
		action, who, reason, formatInt(a.Observed), formatInt(a.Limit), rule, orDash(a.SessionID), client)

	fields := []slackText{
		slackField("Action", action),
		slackField("Employee", who+roleSuffix(a.Role)),
		slackField("Observed / limit", observed),
		slackField("Rule", rule),
		slackField("Session", orDash(a.SessionID)),
		slackField("Client", client),
		slackField("Database", orDash(a.Database)),
		slackField("Severity", orDash(a.Severity)),
	}
	blocks := []slackBlock{
		{Type: "header", Text: &slackText{"plain_text", truncate(fmt.Sprintf("pgwarden: %s %s", action, who), 150)}},
		{Type: "section", Text: &slackText{"mrkdwn", truncate(slackEscape(reason), 3000)}},
		{Type: "section", Fields: fields},
	}
	if a.Statement != "" {
		stmt := strings.ReplaceAll(truncate(a.Statement, 2900), "```", "'''")
		blocks = append(blocks, slackBlock{Type: "section", Text: &slackText{"mrkdwn", "```" + slackEscape(stmt) + "```"}})
	}
	ctxLine := fmt.Sprintf("alert %s", orDash(a.ID))
	if !a.Time.IsZero() {
		ctxLine += " at " + a.Time.UTC().Format(time.RFC3339)
	}
	if len(a.AuditSeqs) > 0 {
		ctxLine += fmt.Sprintf(" · audit seq %d", a.AuditSeqs[0])
		if len(a.AuditSeqs) > 1 {
			ctxLine += fmt.Sprintf(" (+%d)", len(a.AuditSeqs)-1)
		}
	}
	blocks = append(blocks, slackBlock{Type: "context", Elements: []slackText{{"mrkdwn", slackEscape(ctxLine)}}})
	return slackBody{Text: truncate(text, 3000), Blocks: blocks}
}

// withHoldLinks adds to a hold's message, before its context line, the
// links that approve or deny it.
func withHoldLinks(m slackBody, a Alert, approve, deny string) slackBody {
	line := fmt.Sprintf("*Hold %s*: <%s|Approve> · <%s|Deny>", slackEscape(a.HoldID), slackEscape(approve), slackEscape(deny))
	if !a.HoldDeadline.IsZero() {
		line += " (until " + a.HoldDeadline.UTC().Format("15:04:05 MST") + "; the page asks why)"
	}
	b := slackBlock{Type: "section", Text: &slackText{"mrkdwn", line}}
	n := len(m.Blocks) - 1
	m.Blocks = append(m.Blocks[:n:n], b, m.Blocks[n])
	m.Text += fmt.Sprintf(" Approve: %s Deny: %s", approve, deny)
	return m
}

func slackField(label, value string) slackText {
	return slackText{"mrkdwn", "*" + label + "*\n" + truncate(slackEscape(value), 1900)}
}

// slackEscape escapes the three characters Slack's mrkdwn treats as markup
// for links and mentions.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func roleSuffix(role string) string {
	if role == "" {
		return ""
	}
	return " (role " + role + ")"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// truncate shortens s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ell = "…"
	cut := n - len(ell)
	if cut < 0 {
		cut = 0
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}

// formatInt renders n with thousands separators: 1200 -> "1,200".
func formatInt(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

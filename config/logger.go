package config

import (
	"cmp"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Logger returns the logger log.level and log.format describe, writing
// to w.
func (c *Config) Logger(w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(cmp.Or(c.Log.Level, "info")))); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", c.Log.Level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch cmp.Or(c.Log.Format, "text") {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", c.Log.Format)
}

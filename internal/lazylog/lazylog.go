// Package lazylog defers the cost of a logger's attributes until it logs.
//
// A session derives its logger from the server's with its id, client
// address and employee (slog.Logger.With). slog's own handlers format those
// attributes at once, which a short connection that logs nothing at the
// configured level pays for every time. Wrap applies them to the wrapped
// handler at the first record that is handled, once, so that the output is
// exactly what the wrapped handler would have written.
package lazylog

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// Wrap returns a handler that writes through h and keeps the attributes of
// WithAttrs pending until a record is handled.
func Wrap(h slog.Handler) slog.Handler {
	if _, ok := h.(*handler); ok {
		return h
	}
	return &handler{root: h}
}

type handler struct {
	root  slog.Handler // the attributes are applied to it
	attrs []slog.Attr  // pending; never changed once set
	built atomic.Pointer[slog.Handler]
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.root.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	return h.resolved().Handle(ctx, r)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	all := make([]slog.Attr, 0, len(h.attrs)+len(attrs))
	all = append(append(all, h.attrs...), attrs...)
	return &handler{root: h.root, attrs: all}
}

// WithGroup applies the pending attributes first: those given before the
// group stay outside it.
func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &handler{root: h.resolved().WithGroup(name)}
}

// resolved is the wrapped handler with the pending attributes applied,
// built by the first caller (two goroutines may both build it; either
// result is the same).
func (h *handler) resolved() slog.Handler {
	if p := h.built.Load(); p != nil {
		return *p
	}
	b := h.root
	if len(h.attrs) > 0 {
		b = b.WithAttrs(h.attrs)
	}
	h.built.Store(&b)
	return b
}

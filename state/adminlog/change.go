package adminlog

import (
	"errors"
	"fmt"
	"time"

	"github.com/pgwarden/pgwarden/state/holds"
	"github.com/pgwarden/pgwarden/state/quarantine"
)

// Release lets a quarantined employee connect again and records the
// action with record (Write to a state directory, WritePG to the state
// database) for the server to audit.
func Release(q quarantine.Store, employee, by, via, reason string, record func(Action) error) (quarantine.Entry, error) {
	e, ok, err := q.Release(employee)
	if err != nil {
		return e, err
	}
	if !ok {
		return e, fmt.Errorf("%s is not quarantined", employee)
	}
	if err := record(Action{Action: "quarantine_released", By: by, Via: via, Reason: reason,
		Employee: e.Employee, Rule: e.Rule, At: time.Now().UTC()}); err != nil {
		return e, fmt.Errorf("released %s, but the audit record was not written: %w", e.Employee, err)
	}
	return e, nil
}

// Decide approves or denies a pending hold of the state directory
// stateDir's registry reg and records the decision there for the server
// to audit.
func Decide(reg *holds.Registry, stateDir, id string, d holds.Decision) (holds.Hold, error) {
	h, err := reg.DecideWith(id, d)
	if errors.Is(err, holds.ErrNotFound) {
		return h, fmt.Errorf("no pending hold %q (decided, timed out, or its session ended)", id)
	}
	if err != nil {
		return h, err
	}
	if err := Write(stateDir, Action{Action: "hold_" + h.Status, By: d.By, Via: d.Via, Reason: d.Reason,
		Employee: h.Employee, HoldID: h.ID, Rule: h.Rule, At: h.DecidedAt}); err != nil {
		return h, fmt.Errorf("%s %s, but the audit record was not written: %w", h.Status, h.ID, err)
	}
	return h, nil
}

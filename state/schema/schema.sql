-- The tables pgwarden creates in its own PostgreSQL databases. Each
-- instance creates those it uses when it starts (CREATE ... IF NOT
-- EXISTS), so a role that may create tables needs nothing else. Where the
-- role pgwarden connects as may not, a DBA runs this file once with a
-- privileged role and grants pgwarden's role SELECT, INSERT, UPDATE and
-- DELETE on the tables and USAGE on their sequences:
--
--   pgwarden config schema | psql -v ON_ERROR_STOP=1 "$STATE_DATABASE_URL"
--
-- Each "-- table:" line starts the statements of one table, which the
-- store that uses it runs as written here.

-- table: pgwarden_state
-- Learned state (windows, norms) as named blobs: state_url.
CREATE TABLE IF NOT EXISTS pgwarden_state (
	name       text PRIMARY KEY,
	data       bytea NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- table: pgwarden_quarantine
-- Employees refused until released: state_url.
CREATE TABLE IF NOT EXISTS pgwarden_quarantine (
	employee   text PRIMARY KEY,
	since      timestamptz NOT NULL,
	rule       text NOT NULL DEFAULT '',
	reason     text NOT NULL DEFAULT '',
	session_id text NOT NULL DEFAULT ''
);

-- table: pgwarden_admin_actions
-- Changes the command line made (users release --state-url), waiting
-- for a server to write them to its audit trail.
CREATE TABLE IF NOT EXISTS pgwarden_admin_actions (
	id     bigserial PRIMARY KEY,
	action jsonb NOT NULL
);

-- table: pgwarden_window_deltas
-- Shared windows (share_state): each instance's figures per employee
-- and minute.
CREATE TABLE IF NOT EXISTS pgwarden_window_deltas (
	instance    text NOT NULL,
	employee    text NOT NULL,
	minute      timestamptz NOT NULL,
	statements  bigint NOT NULL,
	rows        bigint NOT NULL,
	pii_rows    bigint NOT NULL,
	bytes       bigint NOT NULL,
	unexplained bigint NOT NULL,
	sequential  bigint NOT NULL,
	pii_values  jsonb NOT NULL,
	updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (instance, employee, minute)
);
CREATE INDEX IF NOT EXISTS pgwarden_window_deltas_updated ON pgwarden_window_deltas (updated_at);

-- table: pgwarden_norm_observations
-- Shared norms (share_state): each instance's observations, numbered.
CREATE TABLE IF NOT EXISTS pgwarden_norm_observations (
	instance text NOT NULL,
	seq      bigint NOT NULL,
	at       timestamptz NOT NULL,
	employee text NOT NULL,
	obs      jsonb NOT NULL,
	PRIMARY KEY (instance, seq)
);
CREATE INDEX IF NOT EXISTS pgwarden_norm_observations_at ON pgwarden_norm_observations (at);

-- table: pgwarden_leases
-- Work one instance does for all (reporting drift: "norms"; delivering a
-- sink's alerts: "outbox:SINK"), held until a time on the database's
-- clock.
CREATE TABLE IF NOT EXISTS pgwarden_leases (
	name   text PRIMARY KEY,
	holder text NOT NULL,
	until  timestamptz NOT NULL
);

-- table: pgwarden_outbox
-- The shared alert outbox (share_state with notifications): one row per
-- sink and alert.
CREATE TABLE IF NOT EXISTS pgwarden_outbox (
	id          bigserial PRIMARY KEY,
	sink        text NOT NULL,
	alert       jsonb NOT NULL,
	attempts    int NOT NULL DEFAULT 0,
	enqueued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS pgwarden_outbox_sink_id ON pgwarden_outbox (sink, id);

-- table: pgwarden_stream_outbox
-- Audit stream records spilled while their sink was unreachable (the line
-- as bytea: the bytes the chain hashes, kept exactly).
CREATE TABLE IF NOT EXISTS pgwarden_stream_outbox (
	queue text NOT NULL,
	seq   bigint NOT NULL,
	line  bytea NOT NULL,
	PRIMARY KEY (queue, seq)
);

-- table: pgwarden_stream_cursor
-- How far each audit stream's sink has received.
CREATE TABLE IF NOT EXISTS pgwarden_stream_cursor (
	queue text PRIMARY KEY,
	seq   bigint NOT NULL
);

-- table: pgwarden_audit
-- The central audit trail (audit.url), in the audit database. An
-- embedder may name it otherwise (audit.PGSinkConfig.Table, "name" or
-- "schema.name"); its indexes are named after it.
CREATE TABLE IF NOT EXISTS pgwarden_audit (
	seq bigint PRIMARY KEY,
	time timestamptz NOT NULL,
	type text NOT NULL,
	session_id text,
	employee text,
	data jsonb,
	prev text NOT NULL,
	instance text
);
CREATE INDEX IF NOT EXISTS pgwarden_audit_employee_time_idx ON pgwarden_audit (employee, time);
CREATE INDEX IF NOT EXISTS pgwarden_audit_time_idx ON pgwarden_audit (time);

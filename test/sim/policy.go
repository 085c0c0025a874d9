package main

// simPolicy is the policy evaluated when --policy is not given: the three PII
// columns of customers declared (so that plain reads count whatever the
// detectors make of them), the built-in content detectors on (so that packed
// values, string_agg and json_agg, are counted by content), and hard limits
// per statement and per sliding 10m, 1h and 24h window, alerting before
// blocking. The billing batch account reads 4000 values every night and has
// limits of its own. pgwarden knows nothing of the employees' schedules, so
// there is no rule on hours.
//
// Normal work, for scale: a support lookup returns 3 values, a short list up
// to 40; a busy support agent reads about 400 values a day, a quiet one 60.
// So one statement is stopped at 60 values (no one's work needs more in one
// statement), and 10 minutes at 200 (the 10-minute alert, 150, is never
// reached by normal work). The norms section adds what a DBA cannot write
// by hand: each employee's own norm (and drift, the slow-and-low reads),
// blocking from 4 times it.
const simPolicy = `# pgwarden sim policy: hard limits only (go run ./test/sim --print-policy)
version: 1
mode: enforce
timezone: UTC

pii:
  columns:
    - match: public.customers.full_name
      category: name
    - match: public.customers.email
      category: email
    - match: public.customers.phone
      category: phone
  detectors:
    enabled: true

# Jobs are PostgreSQL roles (job_support, ...); the first group an employee
# belongs to is also their peer group for the norms.
groups:
  analysts: {roles: [job_analyst]}
  batch: [billing_batch]
  dbas: {roles: [job_dba]}
  support: {roles: [job_support]}

rules:
  - name: server-egress
    description: data leaves through the server, uncounted
    when:
      statements: [server_egress]
    action: block

  - name: statement-pii-alert
    except: [group:batch]
    when:
      pii_values: 45
    action: alert
  - name: statement-pii-block
    except: [group:batch]
    when:
      pii_values: 60
    action: block

  # A read the planner expects to return more customers than any lookup
  # or list of normal work is refused before it runs: nothing leaks.
  - name: planner-sees-a-dump
    except: [group:batch]
    when:
      tables: [public.customers]
      estimated_rows: 30
    action: block

  - name: 10m-pii-alert
    except: [group:batch]
    scope: 10m
    when:
      pii_values: 150
    action: alert
  - name: 10m-pii-block
    except: [group:batch]
    scope: 10m
    when:
      pii_values: 200
    action: block

  - name: 1h-pii-alert
    except: [group:batch]
    scope: 1h
    when:
      pii_values: 300
    action: alert
  - name: 1h-pii-block
    except: [group:batch]
    scope: 1h
    when:
      pii_values: 1000
    action: block

  - name: 24h-pii-alert
    except: [group:batch]
    scope: 24h
    when:
      pii_values: 600
    action: alert
  - name: 24h-pii-block
    except: [group:batch]
    scope: 24h
    when:
      pii_values: 2000
    action: block

  - name: batch-statement-block
    subjects: [group:batch]
    when:
      pii_values: 6000
    action: block
  - name: batch-24h-alert
    subjects: [group:batch]
    scope: 24h
    when:
      pii_values: 6000
    action: alert

# Support agents work the tickets assigned to them: a lookup of a customer
# no open ticket of theirs names is unexplained, and the norms watch how
# many a day each employee has (a slow reader's lookups are).
explained_access:
  table: public.customers
  key: id
  query: "SELECT customer_id FROM tickets WHERE assignee = $1 AND status = 'open'"
  refresh: 10m

norms:
  learning_days: 5
  min_active_days: 4
  block_score: 4
  statement_factor: 6
  statement_floor: 60
`

package main

// simPolicyB is organisation B's policy, written by its DBA from the schema
// and the description of the work (docs/evaluation.md), before any attack
// ran and without changing it after: every column that identifies a
// patient declared; per-statement limits a little above the largest list
// of normal work (a support agent's busiest day is about 300 values, a
// statement at most 40 rows); the planner refusing reads of patients far
// larger than any screen; session, hour and day limits; the service
// accounts with limits of their own; the backup and month-end jobs, which
// read every row by design, excepted from volume rules and canaries but
// tied to their programs; and norms as the documentation advises for a
// first deployment, alerting only, and (since the norms section took
// except, after the first runs) not watching the jobs either, as the
// volume rules do not.
const simPolicyB = `# Organisation B's policy (go run ./test/sim --org b --print-policy)
version: 1
mode: enforce
timezone: UTC

pii:
  columns:
    - match: public.patients.full_name
      category: name
    - match: public.patients.email
      category: email
    - match: public.patients.phone
      category: phone
    - match: public.patients.ssn
      category: national_id
    - match: public.patients.address
      category: address
    - match: public.patients.birth_date
      category: date_of_birth
    - match: public.orders.ship_address
      category: address
  detectors:
    enabled: true

groups:
  support: {roles: [job_support]}
  analysts: {roles: [job_analyst]}
  developers: {roles: [job_developer]}
  dbas: {roles: [job_dba]}
  services: [svc_portal, svc_notify]
  jobs: [backup_svc, monthend_batch]

rules:
  - name: server-egress
    description: data leaves through the server, uncounted
    when:
      statements: [server_egress]
    action: block

  # The job accounts read everything; only their own programs may use them.
  - name: jobs-from-their-tools
    subjects: [group:jobs]
    when:
      not_application: ["pg_dump", "monthend-*"]
    action: block

  - name: statement-pii-alert
    except: [group:jobs, group:services]
    when:
      pii_values: 100
    action: alert
  - name: statement-pii-block
    except: [group:jobs, group:services]
    when:
      pii_values: 250
    action: block
  - name: statement-rows-block
    except: [group:jobs, group:services]
    when:
      pii_rows: 50
    action: block
  - name: statement-ssn-block
    except: [group:jobs]
    when:
      pii_values: {national_id: 10}
    action: block
  - name: planner-sees-a-dump
    except: [group:jobs, group:services]
    when:
      tables: [public.patients]
      estimated_rows: 500
    action: block

  - name: session-patients-block
    except: [group:jobs, group:services]
    scope: session
    when:
      distinct_subjects: 500
    action: block
  - name: hour-pii-alert
    except: [group:jobs, group:services]
    scope: 1h
    when:
      pii_values: 600
    action: alert
  - name: day-pii-alert
    except: [group:jobs, group:services]
    scope: 24h
    when:
      pii_values: 1500
    action: alert
  - name: day-pii-block
    except: [group:jobs, group:services]
    scope: 24h
    when:
      pii_values: 5000
    action: block
  - name: day-ssn-alert
    except: [group:jobs]
    scope: 24h
    when:
      pii_values: {national_id: 100}
    action: alert
  - name: sweep-alert
    except: [group:jobs, group:services]
    scope: 1h
    when:
      sequential_rows: 100
    action: alert

  - name: services-statement-block
    subjects: [group:services]
    when:
      pii_values: 5000
    action: block
  - name: services-day-alert
    subjects: [group:services]
    scope: 24h
    when:
      pii_values: 20000
    action: alert

# Three planted patients no one's work looks up.
canaries:
  values: [o.marchetti.90511@postbox.test, t.ashgrove.31877@carrier.test, w.fennimore.66204@halcyon-mail.test]
  block_at: 2
  except: [group:jobs]

# The patients' key, for sweep detection (sequential_rows).
explained_access:
  table: public.patients
  key: id

# The jobs read everything once a night or once a month: no norm to break.
norms:
  learning_days: 7
  block_score: 0
  except: [group:jobs]
`

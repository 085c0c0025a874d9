-- The demo database of deploy/compose.yaml: customers, two employees, and
-- the catalog role pgwarden resolves result columns with.
CREATE TABLE customers (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name  text NOT NULL,
    email text NOT NULL,
    phone text
);
INSERT INTO customers (name, email, phone)
SELECT 'Customer ' || i, 'customer' || i || '@example.com', '+33 6 ' || lpad(i::text, 8, '0')
FROM generate_series(1, 10000) i;

CREATE ROLE support NOLOGIN;
GRANT SELECT ON customers TO support;
CREATE ROLE alice LOGIN PASSWORD 'alice' IN ROLE support;
CREATE ROLE bob LOGIN PASSWORD 'bob' IN ROLE support;

-- pgwarden's catalog role: it reads only pg_catalog, which every role may.
-- Membership of support lets it ask the planner as the employee
-- (estimated_rows rules).
CREATE ROLE pgwarden_catalog LOGIN PASSWORD 'demo-catalog-password';
GRANT CONNECT ON DATABASE app TO pgwarden_catalog;
GRANT support TO pgwarden_catalog;

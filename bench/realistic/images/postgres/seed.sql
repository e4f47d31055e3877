-- A small accounting schema with seeded rows.
CREATE DATABASE accounting;
\connect accounting
CREATE TABLE customers (
    id serial PRIMARY KEY,
    name text NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE accounts (
    id serial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id),
    iban text NOT NULL UNIQUE,
    balance numeric(14, 2) NOT NULL DEFAULT 0
);
CREATE TABLE bookings (
    id bigserial PRIMARY KEY,
    account_id integer NOT NULL REFERENCES accounts (id),
    amount numeric(14, 2) NOT NULL,
    booked timestamptz NOT NULL
);
INSERT INTO customers (name) SELECT 'customer ' || i FROM generate_series(1, 1000) AS i;
INSERT INTO accounts (customer_id, iban, balance)
    SELECT 1 + (i % 1000), 'DE' || lpad(i::text, 20, '0'), (i * 37 % 100000) / 100.0
    FROM generate_series(1, 2000) AS i;
INSERT INTO bookings (account_id, amount, booked)
    SELECT 1 + (i % 2000), ((i * 7919) % 20000 - 10000) / 100.0,
           timestamptz '2026-01-01' + (i || ' minutes')::interval
    FROM generate_series(1, 20000) AS i;
CREATE INDEX bookings_account ON bookings (account_id, booked);
ANALYZE;

#!/bin/sh
# Runs once, when the sample database is first created (postgres image's
# /docker-entrypoint-initdb.d): the agent's login and a small shop.
set -eu
password=$(cat /run/secrets/sample_db_password)
psql -v ON_ERROR_STOP=1 --username postgres --dbname shop -v password="$password" <<'SQL'
CREATE ROLE warden_agent LOGIN PASSWORD :'password';
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, total numeric(10,2) NOT NULL, placed_at timestamptz NOT NULL DEFAULT now());
INSERT INTO customers (name, email) VALUES ('Ada', 'ada@example.com'), ('Grace', 'grace@example.com');
INSERT INTO orders (customer_id, total) VALUES (1, 12.50), (2, 99.00), (1, 7.25);
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO warden_agent;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO warden_agent;
SQL

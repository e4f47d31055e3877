#!/bin/sh
set -eu
bin=/usr/lib/postgresql/15/bin
data=/var/lib/postgresql/data
rm -rf "$data"
"$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
echo "host all all all trust" >>"$data/pg_hba.conf"
# Seed over the unix socket only, then listen on TCP.
"$bin/pg_ctl" -D "$data" -o "-c listen_addresses=''" -w start >/dev/null
psql -v ON_ERROR_STOP=1 -q -U postgres -f /seed.sql
"$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
echo "seeded; starting postgres"
exec "$bin/postgres" -D "$data" -c listen_addresses='*'

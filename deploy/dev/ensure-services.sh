#!/usr/bin/env bash
# Make sure the PostgreSQL and RabbitMQ the tests use are answering: start the local ones when
# they are installed but stopped; otherwise say in one line what to install. Tests pointed
# elsewhere (FERRY_TEST_PG_ADMIN_URL, FERRY_TEST_AMQP_HOST) are left alone.
set -uo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
rabbit_up() { rabbitmqctl -q status >/dev/null 2>&1; }

if [ -z "${FERRY_TEST_PG_ADMIN_URL:-}" ] && ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "ferry: starting the local PostgreSQL" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
    for _ in $(seq 60); do pg_up && break; sleep 1; done
  fi
  pg_up || {
    echo "ferry: PostgreSQL is not answering on 127.0.0.1:5432: install it (apt-get install postgresql) or set FERRY_TEST_PG_ADMIN_URL" >&2
    exit 1
  }
fi

if [ -z "${FERRY_TEST_AMQP_HOST:-}" ] && ! rabbit_up; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "ferry: starting the local RabbitMQ" >&2
    rabbitmq-server -detached
    rabbitmqctl -q await_startup --timeout 120 >/dev/null 2>&1
  fi
  rabbit_up || {
    echo "ferry: RabbitMQ is not answering on 127.0.0.1:5672: install it (apt-get install rabbitmq-server) or set FERRY_TEST_AMQP_HOST" >&2
    exit 1
  }
fi
exit 0

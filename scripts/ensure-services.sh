#!/usr/bin/env bash
# Make sure RabbitMQ (5672) and PostgreSQL (5432) answer on this machine.
# 1. If they answer already, use them.  2. Else start them if they are installed.
# 3. Else `docker compose up -d` when a Docker engine runs.  4. Else, as root on Debian,
# install and start the Debian packages.  Otherwise say what to do and fail.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 90); do port_open "$port" && return 0; sleep 1; done
  echo "error: $name did not start listening on 127.0.0.1:$port within 90 s" >&2
  return 1
}

missing() {
  local out=()
  port_open 5672 || out+=(rabbitmq)
  port_open 5432 || out+=(postgres)
  echo "${out[@]:-}"
}

start_installed() {
  if ! port_open 5432 && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    say "starting the installed PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  if ! port_open 5672 && command -v rabbitmq-server >/dev/null 2>&1; then
    say "starting the installed RabbitMQ"
    rabbitmq-server -detached || true
  fi
}

install_debian() {
  say "installing RabbitMQ and PostgreSQL from Debian packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server postgresql >/dev/null
  start_installed
  wait_port PostgreSQL 5432
  # Tests and `make run` connect over TCP as postgres/postgres.
  runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'postgres'"
}

if [ -z "$(missing)" ]; then
  say "RabbitMQ (5672) and PostgreSQL (5432) are reachable"
  exit 0
fi
start_installed
for _ in $(seq 1 20); do [ -z "$(missing)" ] && break; sleep 1; done
if [ -z "$(missing)" ]; then
  say "RabbitMQ and PostgreSQL are running"
  exit 0
fi
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  say "starting $(missing) with docker compose"
  docker compose up -d --wait rabbitmq postgres
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  install_debian
else
  cat >&2 <<MSG
error: $(missing) not reachable on 127.0.0.1 and cannot be started from here.
Start RabbitMQ on port 5672 (guest/guest) and PostgreSQL on port 5432 (user postgres, password
postgres), or run this as root on Debian, or install Docker and run 'docker compose up -d'.
MSG
  exit 1
fi
wait_port RabbitMQ 5672
wait_port PostgreSQL 5432
say "RabbitMQ and PostgreSQL are running"

#!/usr/bin/env bash
# Creates `autotune-pg`, the unprivileged system user the tests' throwaway PostgreSQL servers run as: postgres
# refuses to run as root, and CI runs as root. Idempotent; does nothing when not root (the servers then run as
# the current user). Without useradd or adduser it only warns: the PostgreSQL tests then skip, saying why.
set -euo pipefail
name=autotune-pg

[ "$(id -u)" -eq 0 ] || exit 0
id -u "$name" >/dev/null 2>&1 && exit 0

shell=/bin/false
for candidate in /usr/sbin/nologin /sbin/nologin; do
    [ -x "$candidate" ] && { shell=$candidate; break; }
done

if command -v useradd >/dev/null 2>&1; then
    useradd --system --no-create-home --shell "$shell" "$name" || true
elif command -v adduser >/dev/null 2>&1; then
    # busybox (Alpine): -S system, -D no password, -H no home.
    adduser -S -D -H -s "$shell" "$name" || true
else
    echo "postgres-user.sh: neither useradd nor adduser found; tests needing PostgreSQL will be skipped" >&2
    exit 0
fi

# `|| true` above, checked here: a concurrent run may have created the user first, which is fine.
if ! id -u "$name" >/dev/null 2>&1; then
    echo "postgres-user.sh: could not create the system user $name; tests needing PostgreSQL will be skipped" >&2
fi

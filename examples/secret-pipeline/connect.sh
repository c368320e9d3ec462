#!/bin/sh
# Pretends to connect; prints the credential the careless ways real scripts do.
set -eu
echo "connecting as app with password $DB_PASSWORD"
printf 'basic auth header: %s\n' "$(printf 'app:%s' "$DB_PASSWORD" | base64)"
printf '{"password":"%s"}\n' "$DB_PASSWORD"

#!/bin/sh
# Pretends to connect; prints the credentials the careless ways real scripts do.
set -eu
echo "connecting as app with password $DB_PASSWORD"
printf 'basic auth header: %s\n' "$(printf 'app:%s' "$DB_PASSWORD" | base64)"
printf '{"password":"%s"}\n' "$DB_PASSWORD"
# The client key is a file only this step can read; the environment holds its path, not the key.
echo "client key file mode $(stat -c %a "$DB_CLIENT_KEY_FILE"), $(wc -c < "$DB_CLIENT_KEY_FILE") bytes:"
cat "$DB_CLIENT_KEY_FILE"

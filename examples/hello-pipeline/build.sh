#!/bin/sh
# Builds the "artifact": a greeting naming the commit it was built from.
set -eu
echo "building at ${AIRLOCK_COMMIT:-unknown}" >&2
echo "${GREETING} from ${AIRLOCK_PIPELINE:-?} run ${AIRLOCK_RUN_NUMBER:-?}"

#!/bin/sh
# The "test suite": the artifact must greet. It writes a JUnit report, which Airlock turns
# into signed test evidence (an in-toto test-result attestation) for what was built.
set -u
mkdir -p reports
if grep -q '^hello ' "$1"; then
  case='<testcase classname="hello" name="greets"/>'
  failed=0
else
  case='<testcase classname="hello" name="greets"><failure message="the artifact does not greet"/></testcase>'
  failed=1
fi
printf '<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="hello" tests="1" failures="%s">%s</testsuite>\n' "$failed" "$case" > reports/junit.xml
if [ "$failed" -eq 0 ]; then echo "1 test passed"; else echo "1 test failed"; fi
exit "$failed"

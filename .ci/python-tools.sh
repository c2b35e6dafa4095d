#!/usr/bin/env bash
# Python test tools in a repo-local venv (`.venv`, git-ignored).
#
#   moto[server]  a third-party Kinesis + IAM implementation that tests/moto.rs runs
#                 on 127.0.0.1 with SigV4 checking switched on
#   cfn-lint      the CloudFormation template linter
#   aws-kinesis-agg  AWS's KPL aggregation module, the third-party de-aggregator that
#                 tests/support/kpl_deaggregate.py runs; its protobuf pinned too, and
#                 six, which it imports without declaring it
#
# Idempotent: creates `.venv` only when it is missing or broken; pip only installs
# what the pins below do not already satisfy (about a second when nothing changes).
# Quiet unless something fails; prints the tool versions at the end.
#
# Usage: bash .ci/python-tools.sh        (PYTHON=/path/to/python3 to pick the interpreter)
# Tests find the venv at <repo>/.venv; MOTO_PYTHON=/path/to/venv/bin/python overrides.
set -euo pipefail

MOTO_VERSION=5.2.5
CFN_LINT_VERSION=1.58.0
AWS_KINESIS_AGG_VERSION=1.2.3
PROTOBUF_VERSION=7.36.2
SIX_VERSION=1.17.0

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "python-tools: '$python' not found; install Python 3.9+ (with the venv module)" >&2
    exit 1
fi

# A venv whose base interpreter moved away (new machine, other pyenv version) is broken:
# rebuild it rather than fail later inside the tests.
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" \
    "cfn-lint==$CFN_LINT_VERSION" \
    "aws-kinesis-agg==$AWS_KINESIS_AGG_VERSION" \
    "protobuf==$PROTOBUF_VERSION" \
    "six==$SIX_VERSION"

"$venv/bin/python" - <<'EOF'
import importlib.metadata as md, sys
names = ("moto", "boto3", "flask", "cfn-lint", "aws-kinesis-agg", "protobuf")
print("python-tools: python %s, %s" % (
    sys.version.split()[0], ", ".join("%s %s" % (n, md.version(n)) for n in names)))
EOF

#!/usr/bin/env bash
# Lint template.yml with cfn-lint (pinned, so a new release cannot break CI unannounced),
# installed from PyPI into .venv at the repo root: created on first use, reused after.
# Informational findings (-I) count as failures too.
set -euo pipefail
CFN_LINT_VERSION="${CFN_LINT_VERSION:-1.58.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
if [[ "$("$VENV/bin/cfn-lint" --version 2>/dev/null)" != "cfn-lint $CFN_LINT_VERSION" ]]; then
	"$VENV/bin/pip" install --quiet --disable-pip-version-check "cfn-lint==$CFN_LINT_VERSION"
fi
"$VENV/bin/cfn-lint" --version
"$VENV/bin/cfn-lint" --include-checks I -- "$ROOT/template.yml"
echo "cfn-lint: template.yml OK"

#!/usr/bin/env bash
# Size budget gate: install the cross-build prerequisites if missing, build both layer zips,
# and fail if the stripped x86_64 binary is >= 2.5 MiB or either zip is >= 1.2 MiB.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/build.sh" deps
"$ROOT/build.sh" size-check

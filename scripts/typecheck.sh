#!/usr/bin/env bash
# Type-check distill with mypy (settings in pyproject.toml [tool.mypy]). The packages sit at the
# repository root under other names (compiler/ is distill.compiler, ...), a mapping mypy cannot
# follow, so they are linked into build/typecheck/distill/ and mypy checks that package; its paths
# are printed back as the repository's own.
set -euo pipefail
cd "$(dirname "$0")/.."

LAYOUT=build/typecheck/distill
mkdir -p "$LAYOUT"
for package in compiler runtime backends; do
  ln -sfn "../../../$package" "$LAYOUT/$package"
done
.venv/bin/mypy "$@" | sed "s#^$LAYOUT/##"

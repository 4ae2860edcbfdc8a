#!/usr/bin/env bash
# Prints the path of a Python 3.12 interpreter that runs, for `sam build` (Lambda's python3.12
# runtime); exits 1 with a message when there is none. A pyenv shim for a version that is not
# active can hang or fail, so every candidate is run (with a timeout) before it is chosen:
# $PYTHON312 if set, then the installed interpreters (pyenv's versions, /usr/local, /usr),
# then whatever `python3.12` on PATH is.
set -u
candidates=()
if [ -n "${PYTHON312:-}" ]; then
  candidates=("$PYTHON312")
else
  root=${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}
  for p in "$root"/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12 \
           "$(command -v python3.12 2>/dev/null)"; do
    [ -n "$p" ] && [ -x "$p" ] && candidates+=("$p")
  done
fi
for p in "${candidates[@]}"; do
  if timeout 10 "$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' </dev/null >/dev/null 2>&1; then
    echo "$p"
    exit 0
  fi
  echo "python312: $p does not run as Python 3.12 (a pyenv shim for an inactive version?); skipping it" >&2
done
echo "python312: no working Python 3.12 found: install one (for example \`pyenv install 3.12\`) or set PYTHON312=/path/to/python3.12" >&2
exit 1

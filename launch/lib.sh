# shellcheck shell=bash
# Helpers shared by the launch scripts (sourced, not run). The caller sets PROGRAM and dry_run.

# Prints a usage error naming the bad argument and exits with status 2.
die() {
  echo "${PROGRAM}: $*" >&2
  echo "Run ${PROGRAM} --help for usage." >&2
  exit 2
}

# One shell word per argument, single-quoted where needed: the printed line runs as is.
quote() {
  local out=() arg
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+=("$arg")
    else
      out+=("'${arg//\'/\'\\\'\'}'")
    fi
  done
  echo "${out[*]}"
}

# Runs the command, or with dry_run=1 prints it (quoted) instead.
run() {
  if ((${dry_run:-0})); then
    quote "$@"
  else
    "$@"
  fi
}

# Fails unless option $1 has a non-empty value $2.
need_value() {
  [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value."
}

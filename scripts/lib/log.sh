# shellcheck shell=bash
# Logging helpers shared by the scripts under scripts/. Everything goes to
# stderr so that a script's stdout stays free for real output.

log() { printf '==> %s\n' "$*" >&2; }

warn() { printf '!!! %s\n' "$*" >&2; }

# banner prints a warning that must not be missed in a long CI log.
banner() {
  local line='!!! ======================================================================'
  printf '%s\n' "$line" >&2
  local msg
  for msg in "$@"; do printf '!!! %s\n' "$msg" >&2; done
  printf '%s\n' "$line" >&2
}

die() {
  printf '!!! error: %s\n' "$*" >&2
  exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

is_root() { [[ $(id -u) -eq 0 ]]; }

# Shared by scripts/test and scripts/demo; sourced, not run.
# Makes sure the machine has what the project needs, installing what is missing.

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Java 17+, Maven, openssl and keytool run the Kafka broker (scripts/kafka). With the
# argument "browser" (the tests), also Node.js, npm and Debian's Chromium (tox -e browser),
# a JDK (a test runs a Java client from its source file, which needs the compiler), and
# Debian's prometheus (promtool and a server that scrapes the proxy's /metrics).
ensure_system_tools() {
  local missing=()
  if [ "${1:-}" = browser ]; then
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
    # promtool checks /metrics, and a real Prometheus server scrapes it (tests/integration/test_ops.py)
    command -v promtool >/dev/null || missing+=(prometheus)
    command -v prometheus >/dev/null || missing+=(prometheus)
  fi
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v keytool >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  command -v openssl >/dev/null || missing+=(openssl)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "installing ${missing[*]} with apt-get"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      die "missing ${missing[*]}; install them (Debian: sudo apt-get install ${missing[*]}) and run again"
    fi
  fi
}

# Put every pyenv-installed CPython 3.10+ on PATH, so tox finds python3.X.
# Appended, not prepended: `python3` keeps meaning what it meant before.
add_pyenv_pythons() {
  local root dir
  root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
  for dir in "$root"/versions/3.1[0-9]*/bin; do
    [ -x "$dir/python3" ] && PATH="$PATH:$dir"
  done
  export PATH
}

# tox_pythons TOX_ARG...: the CPython versions (3.NN, one a line) that the tox environments
# these arguments select run on: those named by -e/--env (or $TOXENV), else those of
# tox.ini's default envlist (also for -e ALL). Environments without a pyNNN factor
# (lint, type, reliability) run on tox's own Python and need nothing more.
tox_pythons() {
  local arg take=0 envs=() names
  for arg in "$@"; do
    [ "$arg" = -- ] && break
    if [ "$take" = 1 ]; then envs+=("$arg"); take=0; continue; fi
    case "$arg" in
      -e | --env) take=1 ;;
      --env=*) envs+=("${arg#--env=}") ;;
      -e*) envs+=("${arg#-e}") ;;
    esac
  done
  if [ ${#envs[@]} -eq 0 ] && [ -n "${TOXENV:-}" ]; then envs+=("$TOXENV"); fi
  names="$(printf '%s\n' "${envs[@]+"${envs[@]}"}" | tr , '\n')"
  if [ ${#envs[@]} -eq 0 ] || grep -qx ALL <<<"$names"; then
    names="$(sed -n '/^envlist *=/,/^[^[:space:]]/p' "$repo/tox.ini")"
  fi
  grep -oE 'py(\{[0-9.,]+\}|[0-9.]+)' <<<"$names" | grep -oE '[0-9.]+' \
    | sed -nE 's/^3\.?([0-9]+)$/3.\1/p' | sort -uV || true
}

# has_python 3.NN: some python3.NN on PATH runs and is that version. Every PATH entry
# is tried, because a pyenv shim for a version that is installed but not selected
# comes first and fails; tox's interpreter discovery also looks past it.
has_python() {
  local dir dirs
  IFS=: read -ra dirs <<<"$PATH"
  for dir in "${dirs[@]}"; do
    if [ -x "$dir/python$1" ] \
      && "$dir/python$1" -c "import sys; sys.exit(sys.version_info[:2] != (${1/./, }))" >/dev/null 2>&1; then
      return 0
    fi
  done
  return 1
}

# require_pythons 3.NN...: die, naming every missing one and how to install it, unless all
# are found. tox.ini has skip_missing_interpreters = false, so tox would fail too, but
# only after minutes of other environments; this says it at once and in one line.
require_pythons() {
  local v missing=() install=()
  for v in "$@"; do
    has_python "$v" || { missing+=("$v"); install+=("pyenv install $v"); }
  done
  if [ ${#missing[@]} -gt 0 ]; then
    local list="${missing[*]}" how
    how="$(printf '%s && ' "${install[@]}")"
    die "Python ${list// /, } not found (tox needs python${list// /, python} for the selected environments); install with '${how% && }' and run again, or pick other environments with -e"
  fi
}

# A python3 >= 3.10 to build the project's virtual environments with.
find_python() {
  local py
  for py in python3 python3.13 python3.12 python3.11 python3.10; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      command -v "$py"; return
    fi
  done
  die "no Python 3.10 or newer found; install one (Debian: apt-get install python3 python3-venv)"
}

# make_venv DIR REQUIREMENT...: create DIR once and install requirements into it.
make_venv() {
  local dir="$1"; shift
  if [ ! -x "$dir/bin/python" ]; then
    say "creating $dir"
    "$(find_python)" -m venv "$dir" || die "could not create a virtual environment (Debian: apt-get install python3-venv)"
  fi
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}

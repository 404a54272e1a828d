# Shared by scripts/test and scripts/demo; sourced, not run.
# Makes sure the machine has what the project needs, installing what is missing.

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Java 17+, Maven, openssl and keytool run the Kafka broker (scripts/kafka).
ensure_system_tools() {
  local missing=()
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
add_pyenv_pythons() {
  local root
  root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
  for dir in "$root"/versions/3.1[0-9]*/bin; do
    [ -x "$dir/python3" ] && PATH="$PATH:$dir"
  done
  export PATH
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

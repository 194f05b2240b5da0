#!/usr/bin/env bash
# Debian packages the local stack needs (idempotent; quick when everything is installed):
#   postgresql-15        the server binaries (the stack runs its own private cluster)
#   prometheus           /usr/bin/prometheus
#   openjdk-17-jdk-headless, maven   Kafka, Kafka Connect + Debezium (jars from Maven Central)
#   python3.11-venv      the project's virtualenv
#   util-linux           setpriv (PostgreSQL runs as the `postgres` user when we are root)
#   chromium             headless browser the HTML report tests render pages with
# Debian's postgresql package may create and start a `main` cluster on 5432; the stack does not
# use it (it has its own cluster on SALESLEDGER_PG_PORT, default 55432).
set -euo pipefail

packages=(postgresql-15 postgresql-client-15 prometheus openjdk-17-jdk-headless maven
          python3.11-venv util-linux ca-certificates chromium)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

# python3.11-venv is only needed when python3.11 comes from Debian (not from pyenv & co).
if [[ " ${missing[*]} " == *" python3.11-venv "* ]] && python3.11 -c 'import venv, ensurepip' 2>/dev/null; then
  missing=("${missing[@]/python3.11-venv}")
fi
missing=($(printf '%s\n' "${missing[@]}" | sed '/^$/d'))

if (( ${#missing[@]} == 0 )); then
  echo "install-system: all Debian packages present"
  exit 0
fi

echo "install-system: installing ${missing[*]}"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO=(sudo); else
    echo "install-system: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-system: done"

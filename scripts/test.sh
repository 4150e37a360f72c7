#!/usr/bin/env bash
# Set up .venv and run the test suite (slow tests excluded; add `-m slow` to run them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# docker-compose validates docker-compose.yml without a Docker engine; install it where we may.
if ! command -v docker-compose >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose >/dev/null 2>&1 \
    || echo "test.sh: could not install docker-compose; its config check will be skipped" >&2
fi
# The SLURM script is checked with shellcheck (its test skips without it): install it where we may.
if ! command -v shellcheck >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q shellcheck >/dev/null 2>&1 \
    || echo "test.sh: could not install shellcheck; the SLURM script's shellcheck will be skipped" >&2
fi
# The MLflow UI test drives headless Chromium through Debian's chromium-driver (it skips without them).
if ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
    || echo "test.sh: could not install chromium and chromium-driver; the MLflow UI browser test will be skipped" >&2
fi
exec .venv/bin/python -m pytest "$@"

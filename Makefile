# Créneau: the two commands a fresh machine needs are `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test nginx chromium wrk bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,dev]"
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/creneau serve --fixtures --sandbox

test: $(STAMP) nginx chromium
	$(BIN)/python -m pytest -q

# tests/api/test_tls_proxy.py runs its own nginx (Debian's package) in front of the server.
# Installed once, when absent; the system service is kept from starting (policy-rc.d) and from
# starting at boot, so nothing listens on port 80 or 443.
AS_ROOT := $(if $(filter 0,$(shell id -u)),,sudo)
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || $(AS_ROOT) sh -euc ' \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
	    trap "rm -f /usr/sbin/policy-rc.d" EXIT; \
	  fi; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx; \
	  if [ -d /run/systemd/system ]; then systemctl disable --now --quiet nginx; fi'

# tests/api/test_stats_page.py opens the statistics page in Debian's Chromium, headless, driven
# by Playwright (from PyPI, which downloads no browser of its own). Installed once, when absent;
# it starts no service.
chromium:
	@command -v chromium >/dev/null || $(AS_ROOT) sh -euc ' \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium'

# bench/wrk.py loads the server with wrk (Debian's package), installed once when absent.
wrk:
	@command -v wrk >/dev/null || $(AS_ROOT) sh -euc ' \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk'

bench: $(STAMP) wrk
	$(BIN)/python bench/wrk.py

lint: $(STAMP)
	$(BIN)/ruff check server tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .creneau

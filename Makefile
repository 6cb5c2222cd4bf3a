# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test venv system-deps bench chaos clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[broker,provision,test]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

# Mosquitto and Chromium are real test peers; install them when we can (root, apt),
# otherwise say what is missing.
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || missing="$$missing mosquitto mosquitto-clients"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing with apt-get"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null \
	      || (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null); \
	  else \
	    echo "missing:$$missing; install them (e.g. sudo apt-get install$$missing) and run make test again" >&2; exit 1; \
	  fi; \
	fi

# `make test NOW=2027-01-01T00:00:30+07:00` (or NOW=2026-11-30, 09:00 site time) runs the suite
# at another date; see README, "Running the suite at another date".
test: venv system-deps
	$(if $(NOW),HAILONG_NOW='$(NOW)') $(PY) -m pytest -q

demo: venv
	$(VENV)/bin/hailong demo

bench: venv system-deps
	$(PY) benchmarks/device_latency.py
	$(PY) benchmarks/drain.py
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/query.py --db .bench/hailong-10m.db   # generates 10 million ratings once (~8 min, ~4 GB)
	$(PY) benchmarks/pages.py --db .bench/hailong-10m.db

chaos: venv system-deps
	HAILONG_CHAOS_ROUNDS=50 $(PY) -m pytest -q tests/test_device_crash.py
	# 50,000 random and mutated payloads against the running service; prints the figures.
	HAILONG_FUZZ_PAYLOADS=50000 $(PY) -m pytest -q -s -p no:cacheprovider tests/test_fuzz_ingest.py

clean:
	rm -rf $(VENV) build *.egg-info

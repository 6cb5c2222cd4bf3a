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
	$(PIP) install --quiet -e '.[broker,test]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

# Mosquitto is a real test peer; install it when we can (root, apt), otherwise say what is missing.
system-deps:
	@if ! command -v mosquitto >/dev/null 2>&1 && ! test -x /usr/sbin/mosquitto; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing mosquitto with apt-get"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto mosquitto-clients >/dev/null \
	      || (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto mosquitto-clients >/dev/null); \
	  else \
	    echo "mosquitto is missing: install it (e.g. sudo apt-get install mosquitto) and run make test again" >&2; exit 1; \
	  fi; \
	fi

test: venv system-deps
	$(PY) -m pytest -q

demo: venv
	$(VENV)/bin/hailong demo

bench: venv system-deps
	$(PY) benchmarks/device_latency.py
	$(PY) benchmarks/drain.py
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/query.py   # generates 10 million ratings (~8 min, ~4 GB); --db FILE to reuse

chaos: venv system-deps
	HAILONG_CHAOS_ROUNDS=50 $(PY) -m pytest -q tests/test_device_crash.py

clean:
	rm -rf $(VENV) build *.egg-info

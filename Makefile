# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test venv system-deps bench fleet chaos soak clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[broker,provision,test]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

# Mosquitto and Chromium are real test peers; install them when we can (root, apt), otherwise say
# what is missing. As root, also fuse3 (the power-cut filesystem) and what the arm64 test needs (an
# arm64 root under qemu-user); without root those tests skip themselves with the reason.
# promtool (Debian's `prometheus`) lints /metrics; without it that one test is skipped. Its package
# would start a Prometheus server: a temporary policy-rc.d (unless one exists) keeps it from
# starting, and --no-install-recommends keeps the node exporter, another daemon, out.
# postgresql (Debian's initdb/pg_ctl): the store's tests start their own throw-away cluster; the
# same guard keeps the package from starting Debian's cluster.
# fonts-dejavu-core: the kiosk draws Vietnamese tickets with DejaVu (its raster test needs it).
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || missing="$$missing mosquitto mosquitto-clients"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	test -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf || missing="$$missing fonts-dejavu-core"; \
	if [ "$$(id -u)" = "0" ]; then \
	  command -v fusermount3 >/dev/null 2>&1 || missing="$$missing fuse3"; \
	  test -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P || command -v qemu-aarch64-static >/dev/null 2>&1 || missing="$$missing qemu-user-static"; \
	  command -v debootstrap >/dev/null 2>&1 || test -x /usr/sbin/debootstrap || missing="$$missing debootstrap"; \
	  command -v update-binfmts >/dev/null 2>&1 || test -x /usr/sbin/update-binfmts || missing="$$missing binfmt-support"; \
	  command -v zstd >/dev/null 2>&1 || missing="$$missing zstd"; \
	fi; \
	lint=""; command -v promtool >/dev/null 2>&1 || lint=" prometheus"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || lint="$$lint postgresql"; \
	if [ -n "$$missing$$lint" ] && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  if [ -n "$$missing" ]; then \
	    echo "installing$$missing with apt-get"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null \
	      || (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null) \
	      || exit 1; \
	    missing=""; \
	  fi; \
	  if [ -n "$$lint" ]; then \
	    echo "installing$$lint with apt-get, its server not started"; \
	    guard=""; \
	    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; \
	      chmod 755 /usr/sbin/policy-rc.d; guard=1; fi; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$lint >/dev/null \
	      || (apt-get update -q >/dev/null \
	          && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$lint >/dev/null); \
	    ok=$$?; [ -z "$$guard" ] || rm -f /usr/sbin/policy-rc.d; [ $$ok = 0 ] || exit 1; \
	    lint=""; \
	  fi; \
	fi; \
	if [ -n "$$lint" ]; then echo "note:$$lint not installed (apt-get install --no-install-recommends$$lint); their tests are skipped" >&2; fi; \
	if [ -n "$$missing" ]; then \
	  echo "missing:$$missing; install them (e.g. sudo apt-get install$$missing) and run make test again" >&2; exit 1; \
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
	$(PY) benchmarks/arm64.py   # as root: the counter under qemu-user, as a ratio to this host

# 10,000 simulated counters against Mosquitto and the service (~10 min; docs/scaling.md).
# FLEET_ARGS passes options, e.g. FLEET_ARGS='--store-url postgresql://... --counters 16000'.
fleet: venv system-deps
	$(PY) benchmarks/fleet.py --counters 10000 $(FLEET_ARGS)

# The long chaos run, one command: counters on power-cut filesystems, one seeded schedule of every
# fault kind (power cuts, kills, broker restarts, network cuts, full disks, clock jumps), and its
# figures printed. `make chaos SEED=7` replays another schedule; HAILONG_CHAOS_* sizes it
# (tests/test_chaos.py, docs/reliability.md).
SEED ?= 2026
chaos: venv system-deps
	HAILONG_CHAOS_LONG=1 HAILONG_CHAOS_SEED=$(SEED) $(PY) -m pytest -q -s -p no:cacheprovider tests/test_chaos.py -k long

# Longer runs of single faults: the device's kill -9 and power-cut rounds, 50,000 fuzzed payloads.
soak: venv system-deps
	HAILONG_CHAOS_SEED=$(SEED) HAILONG_CHAOS_ROUNDS=50 HAILONG_POWER_CUTS=30 \
	  $(PY) -m pytest -q -s -p no:cacheprovider tests/test_device_crash.py tests/test_device_power.py
	HAILONG_FUZZ_PAYLOADS=50000 $(PY) -m pytest -q -s -p no:cacheprovider tests/test_fuzz_ingest.py

clean:
	rm -rf $(VENV) build *.egg-info

# make demo — the demonstration (demo/demo.py, demo/server.c, demo/client.c; demo/server.go for the fourth act, built in mk/langs.mk when Go is installed).
#
#   make demo                    check packages, build what the demo needs, run it
#   make demo DEMO_FLAGS=--keep  keep the logs and captures (their folder is printed)
#
# As root, missing Debian packages are installed with apt-get; otherwise the
# missing ones are named and the demo stops. Packet capture needs root (or
# CAP_NET_RAW): without it the acts run without --pcap, the `wire` check is
# skipped and the demo says so.

DEMO_PACKAGES ?= build-essential pkg-config libpcap-dev libseccomp-dev libunwind-dev zlib1g-dev python3
DEMO_FLAGS    ?=

.PHONY: demo demo-deps demo-build

demo: demo-deps
	@$(MAKE) --no-print-directory demo-build
	BUILD=$(BUILD) $(PYTHON) demo/demo.py $(DEMO_FLAGS)

# Only what the demo runs. A sub-make, so that pkg-config is asked again
# after packages were installed.
demo-build: $(LIB) $(CLI) $(PCAPTOOL) $(DEMO_BIN)

demo-deps:
	@if ! command -v dpkg-query >/dev/null 2>&1; then \
	  echo "demo: not a Debian system; make sure these (or their equivalents) are installed:"; \
	  echo "      $(DEMO_PACKAGES)"; \
	  exit 0; \
	fi; \
	missing=""; \
	for p in $(DEMO_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed$$' \
	    || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then \
	  echo "demo: installing missing packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing \
	    || { echo "demo: apt-get failed; install these by hand:$$missing" >&2; exit 1; }; \
	else \
	  echo "demo: missing Debian packages:$$missing" >&2; \
	  echo "demo: install them with:  sudo apt-get install$$missing" >&2; \
	  echo "demo: (or run 'sudo make demo', which installs them and also captures packets)" >&2; \
	  exit 1; \
	fi

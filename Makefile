# Two commands for a fresh machine with only Python (see README.rst):
#   make demo   set up .venv, then simulate, fit, train and infer on the demo
#   make test   set up .venv, then run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.prospect_sim-installed
OUT    ?= out/demo

.PHONY: install demo test bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch (also pulled in by zuko) fetches GBs of CUDA wheels
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[mpich,test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	# pytest exit status 5 means "no tests collected": report it, do not fail on it
	$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

demo: $(STAMP)
	OUT=$(OUT) PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

clean:
	rm -rf $(VENV) out

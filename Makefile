# SAF: provision and verify a Ray + MLX cluster. `make demo` then `make test` on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_FORCE_COLOR ?= 1

.PHONY: prerequisites demo test molecule bench unit locks lint lab-up lab-down lab-status site verify verify-hosts reset clean

## prerequisites: install the system packages the lab, the tests and the bench need (apt-get, as
## root) when any is missing; does nothing when all are present (lab/prerequisites.py)
prerequisites:
	@$(PYTHON) lab/prerequisites.py --python $(PYTHON)

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

## demo: set up the controller, bring up the lab, run site.yml then verify.yml on it
demo: prerequisites $(BIN)/.installed lab-up site verify

site: $(BIN)/.installed
	$(BIN)/ansible-playbook site.yml

verify: $(BIN)/.installed
	$(BIN)/ansible-playbook verify.yml

reset: $(BIN)/.installed
	$(BIN)/ansible-playbook playbooks/reset.yml

## test: lint, unit tests (one worker per CPU: they are independent), the lab integration tests
## (brings the lab up itself; one at a time, in order), then the testinfra specs in verify/
## against the lab cluster those tests leave running
test: prerequisites $(BIN)/.installed lint lab-up
	$(BIN)/pytest -n auto tests/unit
	$(BIN)/pytest tests/lab
	$(MAKE) verify-hosts

## molecule: `molecule test --all` in every role that has scenarios (roles/*/molecule/), on lab hosts
## of their own (DELTA, EPSILON, ZETA: a running demo lab is left alone). Slower than `make test`
## (about 20 min); CI runs both. One role: make molecule ROLES=ray_node
ROLES ?= $(patsubst roles/%/molecule/,%,$(wildcard roles/*/molecule/))
molecule: $(BIN)/.installed
	@failed=""; for role in $(ROLES); do \
	  echo "== molecule test --all: $$role"; \
	  (cd roles/$$role && molecule test --all) || failed="$$failed $$role"; \
	done; \
	if [ -n "$$failed" ]; then echo "molecule: scenarios failed in:$$failed"; exit 1; fi; \
	echo "molecule: every scenario of $(words $(ROLES)) roles passed"

## bench: after `make demo`, time SAF against `ray up` and a hand-run floor on the lab, as ratios
## (prints a table, writes reports/bench.json; about 25 min; see docs/performance.md).
## BENCH_ARGS="--rounds 3 --only cold,rerun" for a part.
bench: prerequisites $(BIN)/.installed
	$(BIN)/python tests/bench/saf_bench.py $(BENCH_ARGS)

INVENTORY ?= inventory/lab
## verify-hosts: check every node from outside with testinfra (INVENTORY=inventory/studio for the Macs)
verify-hosts: $(BIN)/.installed
	$(BIN)/pytest verify --hosts='ansible://saf_cluster' --ansible-inventory=$(INVENTORY)

## locks: (re)write the hash-pinned lock files in locks/ for every platform in locks/targets.yml
locks: $(BIN)/.installed
	$(BIN)/ansible-playbook playbooks/lock.yml

unit: $(BIN)/.installed
	$(BIN)/pytest -n auto tests/unit

lint: $(BIN)/.installed
	$(BIN)/yamllint .
	$(BIN)/ansible-lint

lab-up:
	$(PYTHON) lab/saflab.py up

lab-down:
	$(PYTHON) lab/saflab.py down

lab-status:
	$(PYTHON) lab/saflab.py status

clean: lab-down
	rm -rf $(VENV) reports

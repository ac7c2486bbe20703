# nginx/nginx.mk -- the nginx dynamic module, the demo and the nginx tests.
# Included by the top Makefile (BUILD, LIB come from there).
#
#   make nginx-module   build/ngx_http_proxy_wasm_module.so and
#                       build/ngx_stream_proxy_wasm_module.so
#   make run            install deps, build everything, start the demo
#   make test-nginx     pytest suite against Debian's nginx (tests/nginx)
#
# The module is built against the configured nginx tree shipped by nginx-dev
# (/usr/share/nginx/src) with Debian's own configure flags, so that it is
# binary compatible with /usr/sbin/nginx. configure is slow: it only runs
# again when nginx/config or Debian's flags change. Debian's conf_flags lack
# the stream subsystem that its nginx has as a dynamic module
# (ngx_stream_module.so): configure gets it with the options `nginx -V`
# shows, for the headers and ngx_auto_config.h; the tree has no stream
# sources, so only our two modules are built (not `make modules`).

NGINX_DEV_SRC  := /usr/share/nginx/src
NGINX_SRC      ?= $(NGINX_DEV_SRC)
NGINX_TREE     := $(BUILD)/nginx-src
# where the .so files go (make NGINX_SRC=... NGINX_MODULE_DIR=dir)
NGINX_MODULE_DIR ?= $(BUILD)
NGINX_MODULE   := $(NGINX_MODULE_DIR)/ngx_http_proxy_wasm_module.so
NGINX_STREAM_MODULE := $(NGINX_MODULE_DIR)/ngx_stream_proxy_wasm_module.so
NGINX_STREAM_FLAGS  := --with-stream=dynamic --with-stream_ssl_module \
                       --with-stream_ssl_preread_module \
                       --with-stream_realip_module
NGINX_MOD_SRCS := $(wildcard nginx/*/*.c nginx/*/*.h)
NGINX_BIN      ?= /usr/sbin/nginx
# Debian's interpreter, which has python3-pytest (not a pyenv one on PATH).
NGINX_PYTHON   ?= /usr/bin/python3

.PHONY: nginx-module run test-nginx

all: nginx-module

nginx-module: $(NGINX_MODULE) $(NGINX_STREAM_MODULE)

ifeq ($(abspath $(NGINX_SRC)),$(NGINX_DEV_SRC))

# (conf_flags through $(wildcard): without nginx-dev the recipe explains.)
$(NGINX_TREE)/objs/Makefile: nginx/config $(wildcard $(NGINX_SRC)/conf_flags)
	@test -f $(NGINX_SRC)/conf_flags || { echo "nginx-module: $(NGINX_SRC) is missing: apt-get install nginx-dev (or make deps)" >&2; exit 1; }
	rm -rf $(NGINX_TREE)
	mkdir -p $(dir $(NGINX_TREE))
	cp -a $(NGINX_SRC) $(NGINX_TREE)
	cd $(NGINX_TREE) && PWASM_LIB=$(abspath $(LIB)) bash -c \
	  'source ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" $(NGINX_STREAM_FLAGS) --add-dynamic-module=$(abspath nginx)' \
	  > configure.log 2>&1 || { tail -n 30 configure.log >&2; exit 1; }

# nginx's own Makefile knows the module's sources and our headers, not the
# library: relink whenever this rule runs. MAKEFLAGS is cleared so that our
# command-line variables (CFLAGS=..., BUILD=...) do not leak into nginx's.
$(NGINX_MODULE): $(NGINX_TREE)/objs/Makefile $(NGINX_MOD_SRCS) $(LIB) \
                 include/pwasm.h include/proxy_wasm/abi.h
	rm -f $(NGINX_TREE)/objs/ngx_http_proxy_wasm_module.so \
	      $(NGINX_TREE)/objs/ngx_stream_proxy_wasm_module.so
	MAKEFLAGS= MFLAGS= $(MAKE) -C $(NGINX_TREE) -f objs/Makefile \
	  objs/ngx_http_proxy_wasm_module.so objs/ngx_stream_proxy_wasm_module.so
	# Never write in place: a running nginx has the old file mapped.
	cp $(NGINX_TREE)/objs/ngx_http_proxy_wasm_module.so $@.tmp && mv -f $@.tmp $@
	cp $(NGINX_TREE)/objs/ngx_stream_proxy_wasm_module.so \
	  $(NGINX_STREAM_MODULE).tmp && mv -f $(NGINX_STREAM_MODULE).tmp $(NGINX_STREAM_MODULE)

# built by the rule above
$(NGINX_STREAM_MODULE): $(NGINX_MODULE)

else
# Another nginx source tree (nginx.org's, a self-built nginx): configured
# with the target binary's own arguments (`$(NGINX_BIN) -V`, or
# NGINX_CONFIGURE), see nginx/build_against.sh and docs/BUILDING.md. The
# script decides what to redo: configure when the source, the arguments or
# nginx/config changed, the link always.
NGINX_TREE := $(BUILD)/nginx-src-$(notdir $(patsubst %/src,%,$(abspath $(NGINX_SRC))))

# (through the environment: it has quotes of its own)
export NGINX_CONFIGURE
.PHONY: $(NGINX_MODULE) $(NGINX_STREAM_MODULE)
$(NGINX_MODULE): $(LIB)
	NGINX_SRC=$(abspath $(NGINX_SRC)) NGINX_BIN=$(NGINX_BIN) \
	  NGINX_TREE=$(abspath $(NGINX_TREE)) \
	  NGINX_MODULE_DIR=$(abspath $(NGINX_MODULE_DIR)) PWASM_LIB=$(abspath $(LIB)) \
	  bash nginx/build_against.sh

$(NGINX_STREAM_MODULE): $(NGINX_MODULE)
	@:
endif

run:
	bash scripts/deps.sh
	$(MAKE) all examples-c examples-as
	bash demo/run.sh $(abspath $(BUILD))

include tests/nginx/plugins.mk

test-nginx: nginx-module examples-c examples-as test-plugins nginx-test-plugins
	PWASM_BUILD=$(abspath $(BUILD)) PWASM_NGINX=$(NGINX_BIN) \
	  $(NGINX_PYTHON) -m pytest -q -p no:cacheprovider tests/nginx

# The same suite on other nginx versions: for each nginx-*.tar.gz of
# NGINX_SOURCES, nginx built under build/nginx-<version>/ (cached), our
# modules built against it with NGINX_SRC=, tests/nginx run on both
# (tests/nginx/other_nginx.sh; NGINX_SOURCES_PYTEST: more pytest arguments,
# e.g. -k stream). `make check` runs it when NGINX_SOURCES is set.
.PHONY: test-nginx-sources
test-nginx-sources: all examples-c examples-as test-plugins nginx-test-plugins
	@test -n "$(NGINX_SOURCES)" || { echo "test-nginx-sources: set NGINX_SOURCES to a directory of nginx-*.tar.gz" >&2; exit 1; }
	NGINX_PYTHON=$(NGINX_PYTHON) bash tests/nginx/other_nginx.sh $(abspath $(NGINX_SOURCES)) $(NGINX_SOURCES_PYTEST)

# Chaos soak (tests/nginx/soak.py): nginx with both modules under load for
# SOAK_SECONDS while it is reloaded, its compile cache damaged and workers
# killed; the report goes to build/soak/report.json. A 60 s version runs in
# test-nginx (tests/nginx/test_soak.py).
SOAK_SECONDS ?= 600

.PHONY: soak
soak: nginx-module examples-c examples-as test-plugins nginx-test-plugins
	PWASM_BUILD=$(abspath $(BUILD)) PWASM_NGINX=$(NGINX_BIN) SOAK_SECONDS=$(SOAK_SECONDS) \
	  nice $(NGINX_PYTHON) tests/nginx/soak.py --dir $(abspath $(BUILD))/soak

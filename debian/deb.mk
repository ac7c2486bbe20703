# debian/deb.mk -- Debian packages (included by the top Makefile).
#
#   make deb        build/deb/*.deb: libnginx-mod-http-proxy-wasm,
#                   libnginx-mod-stream-proxy-wasm, pwasm, pwasm-dev
#   make test-deb   lintian on them, then install, use and purge them
#                   (tests/deb; the install test needs root)
#
# dpkg-buildpackage writes its results in the parent of the source tree:
# the tree is copied to build/deb/pwasm-VERSION (without build/ and .git)
# so that nothing is written outside build/. The packages' version is the
# project's (include/pwasm.h, PWASM_VERSION_STRING): debian/changelog's
# newest entry must agree (`make deb` checks it).

DEB_DIR         := $(BUILD)/deb
PWASM_VERSION   := $(shell sed -n 's/^\#define PWASM_VERSION_STRING "\(.*\)"$$/\1/p' include/pwasm.h)
DEB_SRC         := $(DEB_DIR)/pwasm-$(PWASM_VERSION)

.PHONY: deb deb-version pc test-deb

# The changelog's version: PWASM_VERSION_STRING, or that with a Debian
# revision (0.1.0-2) when only the packaging changed.
deb-version:
	@v=$$(dpkg-parsechangelog -l debian/changelog -S Version) && \
	  case "$$v" in "$(PWASM_VERSION)"|"$(PWASM_VERSION)"-*) ;; \
	  *) echo "deb: debian/changelog is at $$v, include/pwasm.h at $(PWASM_VERSION): add a changelog entry (dch -v $(PWASM_VERSION))" >&2; exit 1;; esac

deb: deb-version
	bash scripts/deps.sh
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_SRC)
	tar -c --exclude-vcs --exclude=./build --exclude=./$(BUILD) \
	  --exclude=node_modules --exclude=__pycache__ --exclude='*.pyc' -f - . \
	  | tar -x -C $(DEB_SRC) -f -
	cd $(DEB_SRC) && MAKEFLAGS= MFLAGS= dpkg-buildpackage -b -us -uc > ../build.log 2>&1 \
	  || { tail -n 40 ../build.log >&2; exit 1; }
	rm -rf $(DEB_SRC)
	@ls -l $(DEB_DIR)/*.deb

# pkg-config file of pwasm-dev (debian/pwasm.pc.in): the version and the
# libraries the host library needs, as this Makefile links them.
pc: $(BUILD)/pwasm.pc
$(BUILD)/pwasm.pc: debian/pwasm.pc.in include/pwasm.h
	@mkdir -p $(dir $@)
	sed -e 's|@VERSION@|$(PWASM_VERSION)|' \
	    -e "s|@MULTIARCH@|$$(dpkg-architecture -qDEB_HOST_MULTIARCH)|" \
	    -e 's|@LIBS@|$(LDLIBS_PWASM)|' $< > $@

test-deb: deb
	PWASM_BUILD=$(abspath $(BUILD)) $(NGINX_PYTHON) -m pytest -q -p no:cacheprovider tests/deb

check: test-deb

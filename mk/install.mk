# make install / make uninstall — PREFIX (default /usr/local), DESTDIR for staging.
#
#   $(LIBDIR)/libclosewatch.so               the shim (LD_PRELOAD it, or link for closewatch_inspect)
#   $(BINDIR)/closewatch                     the CLI; `closewatch run` finds the shim in ../lib
#   $(INCLUDEDIR)/closewatch.h               public header
#   $(PKGCONFIGDIR)/closewatch.pc            from mk/closewatch.pc.in
#   $(MANDIR)/man1/closewatch.1, $(MANDIR)/man7/libclosewatch.7
#
# LIBDIR must stay $(PREFIX)/lib (more exactly: $(BINDIR)/../lib) for the installed
# `closewatch run` to find the library; install warns otherwise.

PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
INSTALL      ?= install

INSTALL_FILES := \
	$(LIBDIR)/libclosewatch.so \
	$(BINDIR)/closewatch \
	$(INCLUDEDIR)/closewatch.h \
	$(PKGCONFIGDIR)/closewatch.pc \
	$(MANDIR)/man1/closewatch.1 \
	$(MANDIR)/man7/libclosewatch.7

# Paths under PREFIX are written relative to ${prefix} in the .pc file.
pc_path = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

# Always regenerated: PREFIX and the directories may differ from the last run.
.PHONY: $(BUILD)/closewatch.pc
$(BUILD)/closewatch.pc: mk/closewatch.pc.in
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|' \
	    -e 's|@LIBDIR@|$(call pc_path,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(call pc_path,$(INCLUDEDIR))|' \
	    -e 's|@BINDIR@|$(call pc_path,$(BINDIR))|' \
	    -e 's|@VERSION@|$(VERSION)|' $< > $@.tmp
	mv $@.tmp $@

install: $(LIB) $(CLI) $(BUILD)/closewatch.pc
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCLUDEDIR) \
	  $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7
	$(INSTALL) -m 0755 $(LIB) $(DESTDIR)$(LIBDIR)/libclosewatch.so
	$(INSTALL) -m 0755 $(CLI) $(DESTDIR)$(BINDIR)/closewatch
	$(INSTALL) -m 0644 include/closewatch.h $(DESTDIR)$(INCLUDEDIR)/closewatch.h
	$(INSTALL) -m 0644 $(BUILD)/closewatch.pc $(DESTDIR)$(PKGCONFIGDIR)/closewatch.pc
	$(INSTALL) -m 0644 tools/closewatch.1 $(DESTDIR)$(MANDIR)/man1/closewatch.1
	$(INSTALL) -m 0644 man/libclosewatch.7 $(DESTDIR)$(MANDIR)/man7/libclosewatch.7
	@if [ "$(abspath $(LIBDIR))" != "$(abspath $(BINDIR)/../lib)" ]; then \
	  echo "install: warning: 'closewatch run' looks for the library in $(abspath $(BINDIR)/../lib)," \
	       "not in LIBDIR=$(LIBDIR); use LD_PRELOAD=$(LIBDIR)/libclosewatch.so directly" >&2; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" -eq 0 ] && command -v ldconfig >/dev/null 2>&1; then \
	  ldconfig; \
	fi

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALL_FILES))
	rmdir $(DESTDIR)$(PKGCONFIGDIR) 2>/dev/null || true

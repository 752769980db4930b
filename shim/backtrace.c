/* Backtraces for the close path: addresses from the compiler's unwinder
 * (_Unwind_Backtrace, libgcc), names from a cache filled once per address.
 *
 * Why not libunwind: its local unwinder validates memory by writing it into
 * a pipe it opens at the lowest free fd numbers. A program that closes every
 * fd (daemons do) and opens sockets on the freed numbers then has bytes read
 * from and written into its sockets, or hangs in libunwind's read(). And its
 * unw_get_proc_name() allocates and reads ELF files on every frame, which
 * made a backtraced close some 60 times slower than the record itself.
 *
 * Here:
 * - Unwinding follows the objects' .eh_frame only (libgcc finds it with
 *   glibc's lock-free _dl_find_object): no fd, no allocation, no lock, and
 *   nothing is read that the unwind tables do not point at. A frame without
 *   unwind information (JIT code) ends the trace.
 * - Naming: a bounded, lock-free table maps an address to its finished text.
 *   A miss costs one dladdr() (exported symbols) and a scan of the object's
 *   .symtab (static functions too). The .symtab of every object loaded at
 *   start-up is mapped once, in cw_backtrace_init() (before the program runs,
 *   the only time the shim opens those files); objects loaded later are named
 *   with dladdr() alone. Nothing here opens an fd or allocates after init, so
 *   it is the same in a signal handler, in any thread, on any stack, after fork.
 *
 * A frame that cannot be named stays "0xoffset (object)". */
#include "backtrace.h"
#include "put.h"
#include "real.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <unwind.h>

/* ---- objects loaded at start-up and their .symtab ------------------------------ */

#define OBJ_MAX 128

struct obj {
	uintptr_t lo, hi;     /* the object's mapped range */
	uintptr_t bias;       /* load address minus link-time address */
	const ElfW(Sym) *sym; /* .symtab, NULL if the file has none */
	size_t nsym;
	const char *str;
	size_t strsz;
};

/* Written in cw_backtrace_init() only, before any hook may run: read-only after. */
static struct obj objs[OBJ_MAX];
static int nobjs;
/* The main program's dladdr() name is "": show its path instead. */
static char exe_path[256];
/* The shim's own code: its frames are not the call site. */
static uintptr_t self_lo, self_hi;

/* Map path's .symtab/.strtab into o (o->sym stays NULL if there is none). */
static void load_symtab(struct obj *o, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat st;
	void *map = MAP_FAILED;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size >= sizeof(ElfW(Ehdr)))
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	REAL(close)(fd);
	if (map == MAP_FAILED)
		return;
	size_t size = (size_t)st.st_size;
	const unsigned char *base = map;
	const ElfW(Ehdr) *eh = map;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_shentsize != sizeof(ElfW(Shdr)) || eh->e_shoff == 0 ||
	    eh->e_shoff > size || (size - eh->e_shoff) / sizeof(ElfW(Shdr)) < eh->e_shnum)
		goto none;
	const ElfW(Shdr) *sh = (const ElfW(Shdr) *)(base + eh->e_shoff);
	for (int i = 0; i < eh->e_shnum; i++) {
		if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum)
			continue;
		const ElfW(Shdr) *ss = &sh[i], *sst = &sh[ss->sh_link];
		if (ss->sh_offset > size || ss->sh_size > size - ss->sh_offset ||
		    sst->sh_offset > size || sst->sh_size > size - sst->sh_offset || sst->sh_size == 0)
			goto none;
		o->sym = (const ElfW(Sym) *)(base + ss->sh_offset);
		o->nsym = ss->sh_size / sizeof(ElfW(Sym));
		o->str = (const char *)(base + sst->sh_offset);
		o->strsz = sst->sh_size;
		return; /* stays mapped for the life of the process */
	}
none:
	munmap(map, size);
}

static int add_obj(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	if (nobjs >= OBJ_MAX)
		return 1;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *p = &info->dlpi_phdr[i];
		if (p->p_type != PT_LOAD)
			continue;
		if (info->dlpi_addr + p->p_vaddr < lo)
			lo = info->dlpi_addr + p->p_vaddr;
		if (info->dlpi_addr + p->p_vaddr + p->p_memsz > hi)
			hi = info->dlpi_addr + p->p_vaddr + p->p_memsz;
	}
	if (lo >= hi)
		return 0;
	const char *path = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : exe_path;
	if (!path[0] || strstr(path, "linux-vdso"))
		return 0;
	struct obj *o = &objs[nobjs++];
	*o = (struct obj){.lo = lo, .hi = hi, .bias = info->dlpi_addr};
	load_symtab(o, path);
	return 0;
}

static _Unwind_Reason_Code stop_at_first(struct _Unwind_Context *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	return _URC_END_OF_STACK;
}

void cw_backtrace_init(void)
{
	ssize_t n = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
	exe_path[n > 0 ? n : 0] = 0;
	struct dl_find_object self;
	if (_dl_find_object((void *)cw_backtrace_init, &self) == 0) {
		self_lo = (uintptr_t)self.dlfo_map_start;
		self_hi = (uintptr_t)self.dlfo_map_end;
	}
	/* Files are read only when backtraces are on: nothing to pay otherwise. */
	if (cw_cfg.backtrace > 0) {
		dl_iterate_phdr(add_obj, NULL);
		/* The unwinder's one-time set-up happens here, not in a first
		 * backtrace that a signal handler's own backtrace could interrupt. */
		_Unwind_Backtrace(stop_at_first, NULL);
	}
}

/* The function of o's .symtab that holds ip, or NULL. */
static const char *symtab_lookup(const struct obj *o, uintptr_t ip, uintptr_t *start)
{
	const char *best = NULL;
	for (size_t i = 0; i < o->nsym; i++) {
		const ElfW(Sym) *s = &o->sym[i];
		int type = ELF64_ST_TYPE(s->st_info);
		if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s->st_shndx == SHN_UNDEF ||
		    s->st_size == 0 || s->st_name >= o->strsz)
			continue;
		uintptr_t a = o->bias + s->st_value;
		/* ip is a return address: the call may be the function's last instruction. */
		if (ip - 1 >= a && ip - 1 < a + s->st_size) {
			best = o->str + s->st_name;
			*start = a;
			if (ELF64_ST_BIND(s->st_info) != STB_LOCAL)
				break; /* a global alias is the better name */
		}
	}
	if (best && !memchr(best, 0, o->strsz - (size_t)(best - o->str)))
		return NULL;
	return best;
}

/* "symbol+0xoff (object)" for ip into out (CW_FRAME_TEXT bytes). */
static void name_frame(uintptr_t ip, char *out)
{
	Dl_info info;
	int have_obj = dladdr((void *)ip, &info) && info.dli_fname;
	const char *sym = NULL;
	uintptr_t start = 0;
	for (int i = 0; i < nobjs && !sym; i++)
		if (ip > objs[i].lo && ip <= objs[i].hi && objs[i].sym)
			sym = symtab_lookup(&objs[i], ip, &start);
	if (!sym && have_obj && info.dli_sname && info.dli_saddr) {
		sym = info.dli_sname;
		start = (uintptr_t)info.dli_saddr;
	}
	size_t n = 0;
	if (sym) {
		/* Long (C++) names are cut so that the offset and object still fit. */
		n = cw_put(out, 96, n, sym);
		n = cw_put(out, CW_FRAME_TEXT, n, "+");
		n = cw_put_hex(out, CW_FRAME_TEXT, n, ip - start);
	} else {
		n = cw_put_hex(out, CW_FRAME_TEXT, n, have_obj ? ip - (uintptr_t)info.dli_fbase : ip);
	}
	n = cw_put(out, CW_FRAME_TEXT, n, " (");
	n = cw_put(out, CW_FRAME_TEXT, n, !have_obj ? "?" : info.dli_fname[0] ? info.dli_fname
						: exe_path[0] ? exe_path : "?");
	cw_put(out, CW_FRAME_TEXT, n, ")");
}

/* ---- names, once per address ------------------------------------------------------ */

/* Open addressing, a few probes, never evicted: a slot is claimed (ip set)
 * once, then its text is written and published (ready). A reader that finds
 * the slot claimed but not ready (another thread, or the code its signal
 * handler interrupted, is filling it) names the frame itself. When the
 * probes find no free slot, the frame is named every time: still correct. */
#define NAME_SLOTS 2048 /* power of two; 256 KiB of bss, touched as used */
#define NAME_PROBES 8

struct name_slot {
	_Atomic uintptr_t ip;
	atomic_int ready;
	char text[CW_FRAME_TEXT];
};
static struct name_slot names[NAME_SLOTS];

static void frame_text(uintptr_t ip, char *out)
{
	size_t h = (size_t)((ip * 0x9E3779B97F4A7C15ull) >> 40);
	struct name_slot *free_slot = NULL;
	for (int i = 0; i < NAME_PROBES; i++) {
		struct name_slot *s = &names[(h + (size_t)i) & (NAME_SLOTS - 1)];
		uintptr_t k = atomic_load_explicit(&s->ip, memory_order_acquire);
		if (k == ip) {
			if (atomic_load_explicit(&s->ready, memory_order_acquire)) {
				memcpy(out, s->text, CW_FRAME_TEXT);
				return;
			}
			break; /* being filled: name it here */
		}
		if (k == 0) {
			free_slot = s;
			break;
		}
	}
	name_frame(ip, out);
	uintptr_t zero = 0;
	if (free_slot && atomic_compare_exchange_strong(&free_slot->ip, &zero, ip)) {
		memcpy(free_slot->text, out, CW_FRAME_TEXT);
		atomic_store_explicit(&free_slot->ready, 1, memory_order_release);
	}
	/* Lost the race for the slot: another thread names ip (or another ip
	 * took it); this frame is named all the same. */
}

/* ---- unwinding --------------------------------------------------------------------- */

#define MAX_STEPS 256

struct walk {
	uintptr_t ips[CW_BT_LIMIT];
	int n, max, steps;
};

static _Unwind_Reason_Code step(struct _Unwind_Context *ctx, void *arg)
{
	struct walk *w = arg;
	if (++w->steps > MAX_STEPS)
		return _URC_END_OF_STACK;
	uintptr_t ip = (uintptr_t)_Unwind_GetIP(ctx);
	if (ip == 0)
		return _URC_END_OF_STACK;
	if (ip >= self_lo && ip < self_hi)
		return _URC_NO_REASON; /* our own hooks: not the call site */
	w->ips[w->n++] = ip;
	return w->n >= w->max ? _URC_END_OF_STACK : _URC_NO_REASON;
}

void cw_backtrace(struct cw_event *ev, int max)
{
	ev->nframes = 0;
	if (max > CW_BT_LIMIT)
		max = CW_BT_LIMIT;
	if (max <= 0)
		return;
	struct walk w = {.n = 0, .max = max, .steps = 0};
	_Unwind_Backtrace(step, &w);
	for (int i = 0; i < w.n; i++)
		frame_text(w.ips[i], ev->frames[i]);
	ev->nframes = w.n;
}

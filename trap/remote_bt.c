/* Backtraces from outside a stopped thread: see remote_bt.h. Runs in the
 * supervisor (closewatch run --via trap), once per record when backtraces
 * are asked for: allocation and stdio are fine here, every read is bounded. */
#include "remote_bt.h"
#include "trap.h"
#include "../core/put.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <libunwind.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

/* In libunwind (generic, x86_64) but not in its public header: the lookup of
 * an ip in a remote .eh_frame_hdr table, as libunwind-ptrace uses it. */
extern int _Ux86_64_dwarf_search_unwind_table(unw_addr_space_t as, unw_word_t ip,
					      unw_dyn_info_t *di, unw_proc_info_t *pi,
					      int need_unwind_info, void *arg);

#define MAX_MAPS 512          /* executable mappings looked at */
#define MAX_STEPS 64          /* frames unwound, whatever max says */
#define SYM_CHUNK 128         /* symbols read per pread */
#define MAX_SYMS (1 << 20)    /* symbols scanned per lookup */
#define MAX_FRAME_SECTION (64u << 20) /* .eh_frame / .debug_frame read, at most */
/* Fake addresses (kernel half: never a user address), 8 GiB per mapping,
 * low 32 bits zero so that 32-bit offsets from them keep their order. */
#define FAKE_BASE 0xfffe000000000000ull
#define FAKE_SHIFT 33
/* Work kept between backtraces (a program makes many records): the layout of
 * each mapped object (by device, inode, address and offset; the fake region
 * of one is served at FAKE_BASE + (its slot << FAKE_SHIFT)) and the function
 * symbols of each file. Emptied when half full, before a backtrace starts. */
#define MAX_CACHED 128
#define MAX_SYMTABS 64

struct map {
	uint64_t start, end, off;
	unsigned long long dev, ino; /* of the file, from /proc/PID/maps */
	char path[256];
	int have_bias;        /* bias and eh_frame_hdr worked out */
	uint64_t bias;        /* load address of the object (vaddr 0) */
	uint64_t hdr;         /* .eh_frame_hdr address, 0 if none */
	uint64_t text_lo, text_hi;
	/* Without .eh_frame_hdr (static glibc programs; Go, whose call frame
	 * information is only in .debug_frame): a search table built here, and
	 * for .debug_frame an .eh_frame-format copy of it, which the accessors
	 * serve at a fake address (fake_at) that is never a user address. */
	unsigned char *fake;
	size_t fake_len;
	uint64_t fake_at, segbase, table_at, table_len;
	/* Copies of the loaded .eh_frame_hdr and .eh_frame read from the file:
	 * libunwind reads them a word at a time, and one process_vm_readv per
	 * word would make every record cost about a millisecond. */
	unsigned char *local[2];
	uint64_t local_at[2];
	size_t local_len[2];
};

struct target {
	pid_t pid;
	uint64_t sp, pc;
	struct map *maps;
	int nmaps;
};

/* ---- the target's registers and memory ------------------------------------------ */

/* "NR ARG1..ARG6 SP PC" for a thread blocked in a system call. */
static int read_syscall_regs(pid_t pid, pid_t tid, uint64_t *sp, uint64_t *pc)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", (int)pid, (int)tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	if (!strncmp(buf, "running", 7) || buf[0] == '-')
		return -1;
	char *tok[9];
	int k = 0;
	for (char *s = strtok(buf, " \n"); s && k < 9; s = strtok(NULL, " \n"))
		tok[k++] = s;
	if (k != 9)
		return -1;
	*sp = strtoull(tok[7], NULL, 16);
	*pc = strtoull(tok[8], NULL, 16);
	return *pc ? 0 : -1;
}

static int read_mem(pid_t pid, uint64_t addr, void *out, size_t len)
{
	if (addr >= FAKE_BASE)
		return -1; /* served by acc_access_mem only */
	struct iovec local = {out, len}, remote = {(void *)(uintptr_t)addr, len};
	return process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -1;
}

/* ---- mappings and objects ----------------------------------------------------- */

static int load_maps(struct target *t)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)t->pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	t->maps = calloc(MAX_MAPS, sizeof(*t->maps));
	t->nmaps = 0;
	while (t->maps && t->nmaps < MAX_MAPS && fgets(line, sizeof(line), f)) {
		unsigned long long s, e, off, ino = 0;
		unsigned dmaj = 0, dmin = 0;
		char perms[8], file[256] = "";
		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %255[^\n]", &s, &e, perms, &off, &dmaj,
			   &dmin, &ino, file) < 4)
			continue;
		if (perms[2] != 'x' || file[0] != '/')
			continue;
		struct map *m = &t->maps[t->nmaps++];
		m->start = s;
		m->end = e;
		m->off = off;
		m->dev = ((unsigned long long)dmaj << 32) | dmin;
		m->ino = ino;
		snprintf(m->path, sizeof(m->path), "%s", file);
	}
	fclose(f);
	return t->maps ? 0 : -1;
}

static struct map *map_of(struct target *t, uint64_t ip)
{
	for (int i = 0; i < t->nmaps; i++)
		if (ip >= t->maps[i].start && ip < t->maps[i].end)
			return &t->maps[i];
	return NULL;
}

/* Opens the object of m as the target sees it (its mount namespace). */
static int open_object(const struct target *t, const struct map *m)
{
	char path[320];
	snprintf(path, sizeof(path), "/proc/%d/root%s", (int)t->pid, m->path);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd >= 0 ? fd : open(m->path, O_RDONLY | O_CLOEXEC);
}

static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
	return pread(fd, buf, n, (off_t)off) == (ssize_t)n ? 0 : -1;
}

/* ---- call frame information without .eh_frame_hdr -------------------------------- */

struct fde_ent {
	uint64_t pc, off;
};

static int cmp_fde(const void *a, const void *b)
{
	const struct fde_ent *x = a, *y = b;
	return x->pc < y->pc ? -1 : x->pc > y->pc;
}

static uint64_t uleb(const unsigned char *p, size_t end, size_t *i)
{
	uint64_t v = 0;
	for (int sh = 0; *i < end && sh < 64; sh += 7) {
		unsigned char b = p[(*i)++];
		v |= (uint64_t)(b & 0x7f) << sh;
		if (!(b & 0x80))
			break;
	}
	return v;
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* Section WANT of the object, decompressed if need be (malloc'd; NULL if absent). */
static unsigned char *read_section(int fd, const Elf64_Ehdr *eh, const char *want, size_t *len,
				   uint64_t *addr)
{
	if (eh->e_shentsize != sizeof(Elf64_Shdr) || !eh->e_shnum || eh->e_shnum > 4096 ||
	    eh->e_shstrndx >= eh->e_shnum)
		return NULL;
	Elf64_Shdr *sh = malloc(eh->e_shnum * sizeof(Elf64_Shdr));
	unsigned char *out = NULL;
	if (!sh || pread_all(fd, sh, eh->e_shnum * sizeof(Elf64_Shdr), eh->e_shoff))
		goto done;
	const Elf64_Shdr *names = &sh[eh->e_shstrndx];
	for (int i = 0; i < eh->e_shnum && !out; i++) {
		char name[32] = "";
		if (sh[i].sh_name >= names->sh_size || sh[i].sh_type != SHT_PROGBITS ||
		    pread(fd, name, sizeof(name) - 1, (off_t)(names->sh_offset + sh[i].sh_name)) <= 0 ||
		    strcmp(name, want) || sh[i].sh_size > MAX_FRAME_SECTION || sh[i].sh_size < 8)
			continue;
		unsigned char *raw = malloc(sh[i].sh_size);
		if (!raw || pread_all(fd, raw, sh[i].sh_size, sh[i].sh_offset)) {
			free(raw);
			break;
		}
		*addr = sh[i].sh_addr;
		if (!(sh[i].sh_flags & SHF_COMPRESSED)) {
			out = raw;
			*len = sh[i].sh_size;
			break;
		}
		Elf64_Chdr ch;
		memcpy(&ch, raw, sizeof(ch));
		uLongf n = (uLongf)ch.ch_size;
		if (ch.ch_type == ELFCOMPRESS_ZLIB && ch.ch_size <= MAX_FRAME_SECTION &&
		    (out = malloc(ch.ch_size ? ch.ch_size : 1)) &&
		    uncompress(out, &n, raw + sizeof(ch), sh[i].sh_size - sizeof(ch)) != Z_OK) {
			free(out);
			out = NULL;
		}
		*len = n;
		free(raw);
	}
done:
	free(sh);
	return out;
}

/* The FDE pointer encoding of the .eh_frame CIE at sec[o] (its 'R' augmentation). */
static int cie_encoding(const unsigned char *sec, size_t end, size_t o)
{
	size_t i = o + 8;
	if (i >= end)
		return -1;
	unsigned version = sec[i++];
	const char *aug = (const char *)sec + i;
	size_t alen = strnlen(aug, end - i);
	i += alen + 1;
	if (strstr(aug, "eh"))
		i += 8;
	uleb(sec, end, &i);               /* code alignment */
	uleb(sec, end, &i);               /* data alignment (sleb: only skipped) */
	if (version == 1)
		i++;
	else
		uleb(sec, end, &i);
	if (aug[0] != 'z')
		return 0x00; /* absptr */
	uleb(sec, end, &i);
	for (const char *a = aug + 1; *a && i < end; a++) {
		if (*a == 'R')
			return sec[i];
		if (*a == 'L')
			i++;
		else if (*a == 'P') {
			unsigned char pe = sec[i++];
			int sz = (pe & 0x0f) == 0x02 || (pe & 0x0f) == 0x0a ? 2
			       : (pe & 0x0f) == 0x03 || (pe & 0x0f) == 0x0b ? 4 : 8;
			i += (size_t)sz;
		} else if (*a != 'S' && *a != 'B')
			return -1;
	}
	return 0x00;
}

/* Walks .eh_frame (debug = 0; sec_addr: its run-time address) or
 * .debug_frame (debug = 1, rewritten in place into .eh_frame form: CIE id 0,
 * relative CIE pointers, absolute pc_begin plus the load bias), collecting
 * (pc_begin, offset) of every FDE. Returns how many, or -1. */
static long collect_fdes(unsigned char *sec, size_t len, int debug, uint64_t sec_addr,
			 uint64_t bias, struct fde_ent **out)
{
	size_t cap = 1024, n = 0, o = 0;
	struct fde_ent *e = malloc(cap * sizeof(*e));
	while (e && o + 8 <= len) {
		uint32_t l = get32(sec + o);
		if (l == 0 && !debug)
			break; /* terminator */
		if (l == 0xffffffff || l > len - o - 4)
			break; /* 64-bit DWARF, or cut short: stop here */
		size_t end = o + 4 + l;
		uint32_t id = get32(sec + o + 4);
		int is_cie = debug ? id == 0xffffffff : id == 0;
		if (is_cie) {
			if (debug)
				memset(sec + o + 4, 0, 4);
		} else if (l >= 4 + 16) {
			size_t cie = debug ? id : o + 4 - id;
			uint64_t pc = 0;
			if (debug) {
				uint32_t rel = (uint32_t)(o + 4 - cie);
				memcpy(sec + o + 4, &rel, 4);
				memcpy(&pc, sec + o + 8, 8);
				pc += bias;
				memcpy(sec + o + 8, &pc, 8);
			} else {
				int enc = cie < o ? cie_encoding(sec, len, cie) : -1;
				int32_t s32;
				memcpy(&s32, sec + o + 8, 4);
				switch (enc < 0 ? -1 : enc & 0x0f) {
				case 0x00: case 0x04: case 0x0c: memcpy(&pc, sec + o + 8, 8); break;
				case 0x03: pc = (uint32_t)s32; break;
				case 0x0b: pc = (uint64_t)(int64_t)s32; break;
				default: enc = -1;
				}
				if (enc < 0 || (enc & 0x70) > 0x10)
					goto next; /* an encoding we do not read: no entry */
				if (enc & 0x10)
					pc += sec_addr + o + 8;
			}
			if (n == cap) {
				struct fde_ent *g = realloc(e, (cap *= 2) * sizeof(*e));
				if (!g)
					break;
				e = g;
			}
			e[n].pc = pc;
			e[n].off = o;
			n++;
		}
next:
		o = end;
	}
	if (!e)
		return -1;
	qsort(e, n, sizeof(*e), cmp_fde);
	*out = e;
	return (long)n;
}

/* Builds m's fake region: for .debug_frame, the rewritten section followed by
 * the search table; for a loaded .eh_frame, only the table (the FDEs are read
 * from the program). Entries are 32-bit offsets from segbase, as in
 * .eh_frame_hdr: every pc must lie within 2 GiB of segbase, in order. */
static void build_fake(struct map *m, uint64_t fake_at, int fd, const Elf64_Ehdr *eh)
{
	size_t len = 0;
	uint64_t addr = 0;
	int debug = 0;
	unsigned char *sec = read_section(fd, eh, ".eh_frame", &len, &addr);
	if (!sec || !addr) {
		free(sec);
		sec = read_section(fd, eh, ".debug_frame", &len, &addr);
		debug = 1;
	}
	if (!sec)
		return;
	m->fake_at = fake_at;
	m->segbase = debug ? m->fake_at : m->bias + addr;
	struct fde_ent *e = NULL;
	long n = collect_fdes(sec, len, debug, m->bias + addr, m->bias, &e);
	size_t img = debug ? (len + 7) & ~(size_t)7 : 0;
	int ok = n > 0;
	for (long i = 0; ok && i < n; i++) {
		int64_t d = (int64_t)(e[i].pc - m->segbase);
		if (debug)
			d = (int32_t)(uint32_t)(e[i].pc - m->segbase);
		ok = d == (int32_t)d && (i == 0 || (int32_t)(e[i].pc - m->segbase) >=
						  (int32_t)(e[i - 1].pc - m->segbase));
	}
	if (ok && (m->fake = calloc(1, img + (size_t)n * 8 + 16))) {
		if (debug)
			memcpy(m->fake, sec, len);
		for (long i = 0; i < n; i++) {
			int32_t v[2] = {(int32_t)(uint32_t)(e[i].pc - m->segbase),
					(int32_t)(uint32_t)e[i].off};
			memcpy(m->fake + img + (size_t)i * 8, v, 8);
		}
		m->fake_len = img + (size_t)n * 8 + 16;
		m->table_at = m->fake_at + img;
		m->table_len = (uint64_t)n;
	}
	free(e);
	free(sec);
}

/* The load bias of m's object (from the PT_LOAD it maps), its executable
 * range and its PT_GNU_EH_FRAME address. */
static struct map laycache[MAX_CACHED];
static int nlay;

static int compute_layout(const struct target *t, struct map *m, uint64_t fake_at);

static int object_layout(const struct target *t, struct map *m)
{
	if (m->have_bias)
		return m->have_bias > 0 ? 0 : -1;
	for (int i = 0; i < nlay; i++) {
		const struct map *c = &laycache[i];
		if (c->dev == m->dev && c->ino == m->ino && c->start == m->start && c->off == m->off &&
		    !strcmp(c->path, m->path)) {
			*m = *c;
			return m->have_bias > 0 ? 0 : -1;
		}
	}
	if (nlay == MAX_CACHED) {
		m->have_bias = -1;
		return -1;
	}
	int slot = nlay++;
	laycache[slot] = *m;
	int rc = compute_layout(t, &laycache[slot], FAKE_BASE + ((uint64_t)slot << FAKE_SHIFT));
	*m = laycache[slot];
	return rc;
}

static void flush_caches(void);

static int compute_layout(const struct target *t, struct map *m, uint64_t fake_at)
{
	m->have_bias = -1;
	int fd = open_object(t, m);
	if (fd < 0)
		return -1;
	Elf64_Ehdr eh;
	int rc = -1;
	if (pread_all(fd, &eh, sizeof(eh), 0) || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 64)
		goto out;
	Elf64_Phdr ph[64];
	if (pread_all(fd, ph, eh.e_phnum * sizeof(Elf64_Phdr), eh.e_phoff))
		goto out;
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), eh_vaddr = 0;
	int found = 0;
	for (int i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type == PT_GNU_EH_FRAME)
			eh_vaddr = ph[i].p_vaddr;
		if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_X) &&
		    (ph[i].p_offset & ~(page - 1)) == m->off && !found) {
			m->bias = m->start - (ph[i].p_vaddr & ~(page - 1));
			m->text_lo = m->bias + ph[i].p_vaddr;
			m->text_hi = m->text_lo + ph[i].p_memsz;
			found = 1;
		}
	}
	if (!found)
		goto out;
	m->hdr = eh_vaddr ? m->bias + eh_vaddr : 0;
	if (!m->hdr)
		build_fake(m, fake_at, fd, &eh);
	static const char *const copied[2] = {".eh_frame_hdr", ".eh_frame"};
	for (int k = 0; k < 2; k++) {
		uint64_t addr = 0;
		m->local[k] = read_section(fd, &eh, copied[k], &m->local_len[k], &addr);
		m->local_at[k] = m->bias + addr;
		if (m->local[k] && !addr) {
			free(m->local[k]); /* not loaded: not what the program's memory holds */
			m->local[k] = NULL;
		}
	}
	m->have_bias = 1;
	rc = 0;
out:
	close(fd);
	return rc;
}

/* ---- naming: .symtab, else .dynsym ------------------------------------------------ */

struct fsym {
	uint64_t value, size;
	uint32_t name;
};

struct symtab {
	unsigned long long dev, ino;
	char path[256];
	struct fsym *s;       /* function symbols, by address */
	size_t n;
	char *str;            /* the string table */
	size_t strsz;
};

static struct symtab symcache[MAX_SYMTABS];
static int nsymc;

static int cmp_fsym(const void *a, const void *b)
{
	const struct fsym *x = a, *y = b;
	return x->value < y->value ? -1 : x->value > y->value;
}

/* Reads the function symbols of the object (its .symtab, or .dynsym when
 * stripped) into st. */
static void load_symbols(const struct target *t, const struct map *m, struct symtab *st)
{
	int fd = open_object(t, m);
	if (fd < 0)
		return;
	Elf64_Ehdr eh;
	Elf64_Shdr *sh = NULL;
	if (pread_all(fd, &eh, sizeof(eh), 0) || eh.e_shentsize != sizeof(Elf64_Shdr) ||
	    eh.e_shnum == 0 || eh.e_shnum > 4096 || !(sh = malloc(eh.e_shnum * sizeof(Elf64_Shdr))) ||
	    pread_all(fd, sh, eh.e_shnum * sizeof(Elf64_Shdr), eh.e_shoff))
		goto out;
	const Elf64_Shdr *sym = NULL;
	for (int pass = 0; pass < 2 && !sym; pass++)
		for (int i = 0; i < eh.e_shnum && !sym; i++)
			if (sh[i].sh_type == (pass ? SHT_DYNSYM : SHT_SYMTAB) && sh[i].sh_link < eh.e_shnum &&
			    sh[i].sh_entsize == sizeof(Elf64_Sym) && sh[i].sh_size)
				sym = &sh[i];
	if (!sym)
		goto out;
	const Elf64_Shdr *str = &sh[sym->sh_link];
	uint64_t total = sym->sh_size / sizeof(Elf64_Sym);
	if (total > MAX_SYMS)
		total = MAX_SYMS;
	if (str->sh_size > MAX_FRAME_SECTION || !(st->str = malloc(str->sh_size + 1)) ||
	    pread_all(fd, st->str, str->sh_size, str->sh_offset))
		goto out;
	st->str[str->sh_size] = 0;
	st->strsz = str->sh_size;
	size_t cap = 256;
	st->s = malloc(cap * sizeof(*st->s));
	Elf64_Sym chunk[SYM_CHUNK];
	for (uint64_t i = 0; st->s && i < total; i += SYM_CHUNK) {
		uint64_t k = total - i < SYM_CHUNK ? total - i : SYM_CHUNK;
		if (pread_all(fd, chunk, k * sizeof(Elf64_Sym), sym->sh_offset + i * sizeof(Elf64_Sym)))
			break;
		for (uint64_t j = 0; j < k; j++) {
			const Elf64_Sym *y = &chunk[j];
			if (ELF64_ST_TYPE(y->st_info) != STT_FUNC || y->st_shndx == SHN_UNDEF ||
			    !y->st_value || y->st_name >= st->strsz || !st->str[y->st_name])
				continue;
			if (st->n == cap) {
				struct fsym *g = realloc(st->s, (cap *= 2) * sizeof(*st->s));
				if (!g)
					goto sorted;
				st->s = g;
			}
			st->s[st->n++] = (struct fsym){y->st_value, y->st_size, y->st_name};
		}
	}
sorted:
	if (st->s)
		qsort(st->s, st->n, sizeof(*st->s), cmp_fsym);
out:
	free(sh);
	close(fd);
}

static const struct symtab *symbols_of(const struct target *t, const struct map *m)
{
	for (int i = 0; i < nsymc; i++)
		if (symcache[i].dev == m->dev && symcache[i].ino == m->ino &&
		    !strcmp(symcache[i].path, m->path))
			return &symcache[i];
	if (nsymc == MAX_SYMTABS)
		return NULL;
	struct symtab *st = &symcache[nsymc++];
	memset(st, 0, sizeof(*st));
	st->dev = m->dev;
	st->ino = m->ino;
	snprintf(st->path, sizeof(st->path), "%s", m->path);
	load_symbols(t, m, st);
	return st;
}

/* Name of the function containing addr (an address in the object's own
 * terms, i.e. minus the bias): a sized symbol that contains it, else the
 * nearest unsized one below it. */
static int object_symbol(const struct target *t, const struct map *m, uint64_t addr, char *name,
			 size_t cap, uint64_t *off)
{
	const struct symtab *st = symbols_of(t, m);
	if (!st || !st->n || addr < st->s[0].value)
		return -1;
	size_t lo = 0, hi = st->n; /* last symbol with value <= addr */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (st->s[mid].value <= addr)
			lo = mid;
		else
			hi = mid;
	}
	const struct fsym *hit = NULL;
	for (size_t j = lo + 1; j-- > 0 && lo - j < 16 && !hit;)
		if (st->s[j].size && addr < st->s[j].value + st->s[j].size)
			hit = &st->s[j];
	if (!hit && !st->s[lo].size)
		hit = &st->s[lo];
	if (!hit)
		return -1;
	snprintf(name, cap, "%s", st->str + hit->name);
	*off = addr - hit->value;
	return 0;
}

static void flush_caches(void)
{
	for (int i = 0; i < nlay; i++) {
		free(laycache[i].fake);
		free(laycache[i].local[0]);
		free(laycache[i].local[1]);
	}
	nlay = 0;
	for (int i = 0; i < nsymc; i++) {
		free(symcache[i].s);
		free(symcache[i].str);
	}
	nsymc = 0;
}

static void name_frame(struct target *t, uint64_t ip, int is_return, char *frame)
{
	struct map *m = map_of(t, ip - (is_return ? 1 : 0));
	size_t n = 0;
	char name[96];
	uint64_t off;
	if (!m || object_layout(t, m) != 0) {
		n = cw_put_hex(frame, CW_FRAME_TEXT, n, ip);
		n = cw_put(frame, CW_FRAME_TEXT, n, " (");
		n = cw_put(frame, CW_FRAME_TEXT, n, m ? m->path : "?");
		cw_put(frame, CW_FRAME_TEXT, n, ")");
		return;
	}
	/* A return address may be one past the end of a call at the end of a
	 * function: look up ip - 1, write the offset of ip. */
	uint64_t rel = ip - m->bias;
	if (object_symbol(t, m, rel - (is_return ? 1 : 0), name, sizeof(name), &off) == 0) {
		n = cw_put(frame, CW_FRAME_TEXT, n, name);
		n = cw_put(frame, CW_FRAME_TEXT, n, "+");
		n = cw_put_hex(frame, CW_FRAME_TEXT, n, off + (is_return ? 1 : 0));
	} else {
		n = cw_put_hex(frame, CW_FRAME_TEXT, n, rel);
	}
	n = cw_put(frame, CW_FRAME_TEXT, n, " (");
	n = cw_put(frame, CW_FRAME_TEXT, n, m->path);
	cw_put(frame, CW_FRAME_TEXT, n, ")");
}

/* ---- libunwind accessors -------------------------------------------------------- */

/* Reads a DW_EH_PE-encoded value of .eh_frame_hdr's header; only the
 * encodings linkers write there (udata4, sdata4, pcrel|sdata4). */
static int read_encoded(pid_t pid, uint64_t addr, unsigned char enc, uint64_t *out)
{
	int32_t v;
	if (read_mem(pid, addr, &v, 4))
		return -1;
	switch (enc) {
	case 0x03: /* udata4 */
		*out = (uint32_t)v;
		return 0;
	case 0x0b: /* sdata4 */
		*out = (uint64_t)(int64_t)v;
		return 0;
	case 0x1b: /* pcrel | sdata4 */
		*out = addr + (uint64_t)(int64_t)v;
		return 0;
	}
	return -1;
}

static int acc_find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t *pi,
			      int need_unwind_info, void *arg)
{
	struct target *t = arg;
	struct map *m = map_of(t, ip);
	if (!m || object_layout(t, m) != 0 || (!m->hdr && !m->table_len))
		return -UNW_ENOINFO;
	unw_dyn_info_t di;
	memset(&di, 0, sizeof(di));
	di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
	di.start_ip = m->text_lo;
	di.end_ip = m->text_hi;
	if (!m->hdr) {
		di.u.rti.segbase = m->segbase;
		di.u.rti.table_data = m->table_at;
		di.u.rti.table_len = m->table_len * 8 / sizeof(unw_word_t);
		return _Ux86_64_dwarf_search_unwind_table(as, ip, &di, pi, need_unwind_info, arg);
	}
	unsigned char h[4];
	if (read_mem(t->pid, m->hdr, h, 4) || h[0] != 1)
		return -UNW_ENOINFO;
	uint64_t eh_frame, count;
	/* The binary search table must be datarel|sdata4 (0x3b) for libunwind. */
	if (read_encoded(t->pid, m->hdr + 4, h[1], &eh_frame) ||
	    read_encoded(t->pid, m->hdr + 8, h[2], &count) || h[3] != 0x3b)
		return -UNW_ENOINFO;
	di.u.rti.segbase = m->hdr;
	di.u.rti.table_data = m->hdr + 12;
	di.u.rti.table_len = count * 8 / sizeof(unw_word_t);
	return _Ux86_64_dwarf_search_unwind_table(as, ip, &di, pi, need_unwind_info, arg);
}

static void acc_put_unwind_info(unw_addr_space_t as, unw_proc_info_t *pi, void *arg)
{
	(void)as;
	(void)pi;
	(void)arg; /* libunwind frees what dwarf_search_unwind_table gave (its own pool) */
}

static int acc_get_dyn_info_list_addr(unw_addr_space_t as, unw_word_t *addr, void *arg)
{
	(void)as;
	(void)addr;
	(void)arg;
	return -UNW_ENOINFO;
}

static int acc_access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write, void *arg)
{
	(void)as;
	struct target *t = arg;
	if (write)
		return -UNW_EINVAL;
	if (addr >= FAKE_BASE) {
		uint64_t idx = (addr - FAKE_BASE) >> FAKE_SHIFT;
		uint64_t off = (addr - FAKE_BASE) & ((1ull << FAKE_SHIFT) - 1);
		if (idx >= (uint64_t)nlay || !laycache[idx].fake || off + sizeof(*val) > laycache[idx].fake_len)
			return -UNW_EINVAL;
		memcpy(val, laycache[idx].fake + off, sizeof(*val));
		return 0;
	}
	for (int i = 0; i < nlay; i++)
		for (int k = 0; k < 2; k++) {
			const struct map *c = &laycache[i];
			if (c->local[k] && addr >= c->local_at[k] &&
			    addr - c->local_at[k] + sizeof(*val) <= c->local_len[k]) {
				memcpy(val, c->local[k] + (addr - c->local_at[k]), sizeof(*val));
				return 0;
			}
		}
	return read_mem(t->pid, addr, val, sizeof(*val)) ? -UNW_EINVAL : 0;
}

/* Only sp and pc are known; any other register ends the unwinding. */
static int acc_access_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t *val, int write, void *arg)
{
	(void)as;
	struct target *t = arg;
	if (write)
		return -UNW_EBADREG;
	if (reg == UNW_REG_IP)
		*val = t->pc;
	else if (reg == UNW_REG_SP)
		*val = t->sp;
	else
		return -UNW_EBADREG;
	return 0;
}

static int acc_access_fpreg(unw_addr_space_t as, unw_regnum_t reg, unw_fpreg_t *val, int write,
			    void *arg)
{
	(void)as;
	(void)reg;
	(void)val;
	(void)write;
	(void)arg;
	return -UNW_EBADREG;
}

static int acc_resume(unw_addr_space_t as, unw_cursor_t *c, void *arg)
{
	(void)as;
	(void)c;
	(void)arg;
	return -UNW_EINVAL;
}

static int acc_get_proc_name(unw_addr_space_t as, unw_word_t addr, char *buf, size_t len,
			     unw_word_t *off, void *arg)
{
	(void)as;
	(void)addr;
	(void)buf;
	(void)len;
	(void)off;
	(void)arg;
	return -UNW_ENOINFO; /* names come from name_frame() */
}

static unw_accessors_t accessors = {
	.find_proc_info = acc_find_proc_info,
	.put_unwind_info = acc_put_unwind_info,
	.get_dyn_info_list_addr = acc_get_dyn_info_list_addr,
	.access_mem = acc_access_mem,
	.access_reg = acc_access_reg,
	.access_fpreg = acc_access_fpreg,
	.resume = acc_resume,
	.get_proc_name = acc_get_proc_name,
};

static pthread_mutex_t bt_lock = PTHREAD_MUTEX_INITIALIZER;

static int backtrace_locked(pid_t pid, pid_t tid, struct cw_event *ev, int max);

int cw_remote_backtrace(pid_t pid, pid_t tid, struct cw_event *ev, int max)
{
	pthread_mutex_lock(&bt_lock);
	if (nlay > MAX_CACHED / 2 || nsymc > MAX_SYMTABS / 2)
		flush_caches();
	int n = backtrace_locked(pid, tid, ev, max);
	pthread_mutex_unlock(&bt_lock);
	return n;
}

static int backtrace_locked(pid_t pid, pid_t tid, struct cw_event *ev, int max)
{
	ev->nframes = 0;
	if (max > CW_BT_LIMIT)
		max = CW_BT_LIMIT;
	struct target t = {.pid = pid};
	if (max <= 0 || read_syscall_regs(pid, tid, &t.sp, &t.pc) != 0 || load_maps(&t) != 0)
		return 0;
	name_frame(&t, t.pc, 0, ev->frames[ev->nframes++]);
	unw_addr_space_t as = unw_create_addr_space(&accessors, 0);
	unw_cursor_t cur;
	if (as && unw_init_remote(&cur, as, &t) == 0) {
		uint64_t prev_sp = t.sp;
		for (int steps = 0; ev->nframes < max && steps < MAX_STEPS; steps++) {
			if (unw_step(&cur) <= 0)
				break;
			unw_word_t ip = 0, sp = 0;
			if (unw_get_reg(&cur, UNW_REG_IP, &ip) < 0 || unw_get_reg(&cur, UNW_REG_SP, &sp) < 0 ||
			    !ip || sp <= prev_sp)
				break; /* the stack grows down: a frame must be above the last */
			prev_sp = sp;
			name_frame(&t, ip, 1, ev->frames[ev->nframes++]);
		}
	}
	if (as)
		unw_destroy_addr_space(as);
	free(t.maps);
	return ev->nframes;
}

/* The trap asks through this pointer (NULL: no bt). */
__attribute__((constructor)) static void install(void)
{
	cw_trap_backtrace = cw_remote_backtrace;
}

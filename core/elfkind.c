/* Reading an executable's ELF headers to tell whether LD_PRELOAD reaches it
 * (see elfkind.h). Bounded reads into stack buffers: no malloc, no stdio, so
 * that the shim may call it in an exec hook (after vfork too).
 *
 * In the shim, close() below goes through the shim's own close hook, which
 * passes a regular file straight to the real close. */
#include "elfkind.h"
#include "put.h"

#include <elf.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PHDRS 64        /* more program headers than this: only the first ones are read */
#define NOTE_READ 512       /* bytes of each PT_NOTE segment looked at (Go's note comes first) */
#define MAX_SHDRS 128       /* section headers looked at for .note.go.buildid */

#if __SIZEOF_POINTER__ == 8
#define CW_ELFCLASS ELFCLASS64
typedef Elf64_Ehdr Ehdr;
typedef Elf64_Phdr Phdr;
typedef Elf64_Shdr Shdr;
typedef Elf64_Nhdr Nhdr;
#else
#define CW_ELFCLASS ELFCLASS32
typedef Elf32_Ehdr Ehdr;
typedef Elf32_Phdr Phdr;
typedef Elf32_Shdr Shdr;
typedef Elf32_Nhdr Nhdr;
#endif

#if defined(__x86_64__)
#define CW_EM EM_X86_64
#elif defined(__aarch64__)
#define CW_EM EM_AARCH64
#elif defined(__i386__)
#define CW_EM EM_386
#else
#define CW_EM EM_NONE
#endif

static int read_at(int fd, void *buf, size_t n, off_t off)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, (char *)buf + got, n - got, off + (off_t)got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

static void set_why(char *why, size_t cap, const char *a, const char *b)
{
	if (!why || !cap)
		return;
	size_t n = cw_put(why, cap, 0, a);
	if (b)
		cw_put(why, cap, n, b);
}

/* glibc's dynamic linkers: ld-linux-x86-64.so.2, ld-linux.so.2, ld-linux-aarch64.so.1, ld64.so.N */
static int glibc_loader(const char *interp)
{
	const char *base = strrchr(interp, '/');
	base = base ? base + 1 : interp;
	return (!strncmp(base, "ld-linux", 8) || !strncmp(base, "ld64.so", 7)) && strstr(base, ".so");
}

/* An ELF note named "Go" of type 4 (NT_GO_BUILDID) in the bytes [buf, buf+n). */
static int has_go_note(const unsigned char *buf, size_t n)
{
	size_t off = 0;
	while (off + sizeof(Nhdr) <= n) {
		Nhdr h;
		memcpy(&h, buf + off, sizeof(h));
		size_t name = off + sizeof(h);
		if (h.n_namesz == 3 && h.n_type == 4 && name + 3 <= n && !memcmp(buf + name, "Go", 3))
			return 1;
		size_t next = name + ((h.n_namesz + 3u) & ~3u) + ((h.n_descsz + 3u) & ~3u);
		if (next <= off || h.n_namesz > n || h.n_descsz > n)
			break;
		off = next;
	}
	return 0;
}

/* A section named .note.go.buildid (Go programs whose note is in no PT_NOTE). */
static int has_go_section(int fd, const Ehdr *eh)
{
	if (eh->e_shentsize != sizeof(Shdr) || eh->e_shnum == 0 || eh->e_shstrndx >= eh->e_shnum)
		return 0;
	Shdr strtab;
	if (read_at(fd, &strtab, sizeof(strtab), (off_t)(eh->e_shoff + (off_t)eh->e_shstrndx * sizeof(Shdr))))
		return 0;
	unsigned n = eh->e_shnum < MAX_SHDRS ? eh->e_shnum : MAX_SHDRS;
	for (unsigned i = 0; i < n; i++) {
		Shdr sh;
		char name[20];
		if (read_at(fd, &sh, sizeof(sh), (off_t)(eh->e_shoff + (off_t)i * sizeof(Shdr))))
			return 0;
		if (sh.sh_type != SHT_NOTE || sh.sh_name >= strtab.sh_size)
			continue;
		if (read_at(fd, name, sizeof(name), (off_t)(strtab.sh_offset + sh.sh_name)) == 0 &&
		    !memcmp(name, ".note.go.buildid", 17))
			return 1;
	}
	return 0;
}

/* The ELF part: fd is open on a file that starts with \177ELF. */
static enum cw_elf_kind classify_elf(int fd, char *why, size_t cap)
{
	Ehdr eh;
	if (read_at(fd, &eh, sizeof(eh), 0) || eh.e_ident[EI_CLASS] != CW_ELFCLASS ||
	    eh.e_machine != CW_EM) {
		set_why(why, cap, CW_ELF_FOREIGN_WHY, NULL);
		return CW_ELF_FOREIGN;
	}
	if (eh.e_phentsize != sizeof(Phdr))
		return CW_ELF_UNKNOWN;
	char interp[256] = "";
	int go = 0;
	unsigned n = eh.e_phnum < MAX_PHDRS ? eh.e_phnum : MAX_PHDRS;
	for (unsigned i = 0; i < n; i++) {
		Phdr ph;
		if (read_at(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + (off_t)i * sizeof(Phdr))))
			return CW_ELF_UNKNOWN;
		if (ph.p_type == PT_INTERP) {
			size_t len = ph.p_filesz < sizeof(interp) - 1 ? ph.p_filesz : sizeof(interp) - 1;
			if (read_at(fd, interp, len, (off_t)ph.p_offset))
				return CW_ELF_UNKNOWN;
			interp[len] = 0;
		} else if (ph.p_type == PT_NOTE && !go) {
			unsigned char buf[NOTE_READ];
			size_t len = ph.p_filesz < sizeof(buf) ? ph.p_filesz : sizeof(buf);
			if (read_at(fd, buf, len, (off_t)ph.p_offset) == 0)
				go = has_go_note(buf, len);
		}
	}
	if (!go)
		go = has_go_section(fd, &eh);
	if (go) {
		set_why(why, cap, "Go program", NULL);
		return CW_ELF_GO;
	}
	if (!interp[0]) {
		set_why(why, cap, "statically linked", NULL);
		return CW_ELF_STATIC;
	}
	if (!glibc_loader(interp)) {
		set_why(why, cap, strstr(interp, "musl") ? "musl loader " : "loader ", interp);
		return CW_ELF_OTHER_LOADER;
	}
	return CW_ELF_PRELOADABLE;
}

/* setuid/setgid to someone else: the program runs with AT_SECURE and the
 * loader ignores LD_PRELOAD (a setuid program of our own user does not). */
static int secure_exec(const struct stat *st)
{
	return ((st->st_mode & S_ISUID) && st->st_uid != geteuid()) ||
	       ((st->st_mode & S_ISGID) && (st->st_mode & S_IXGRP) && st->st_gid != getegid());
}

static enum cw_elf_kind classify(const char *path, char *why, size_t cap, int follow)
{
	set_why(why, cap, "", NULL);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return CW_ELF_UNKNOWN;
	enum cw_elf_kind k = CW_ELF_UNKNOWN;
	struct stat st;
	unsigned char head[256];
	ssize_t r = -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		r = pread(fd, head, sizeof(head) - 1, 0);
	if (r >= 4 && !memcmp(head, ELFMAG, SELFMAG)) {
		k = classify_elf(fd, why, cap);
		if (k == CW_ELF_PRELOADABLE && secure_exec(&st)) {
			set_why(why, cap, st.st_mode & S_ISUID ? "setuid" : "setgid", NULL);
			k = CW_ELF_SETUID;
		}
	} else if (r >= 3 && head[0] == '#' && head[1] == '!' && follow) {
		/* The interpreter: first word after #!, on the first line. */
		head[r] = 0;
		char *p = (char *)head + 2;
		while (*p == ' ' || *p == '\t')
			p++;
		char *e = p;
		while (*e && *e != ' ' && *e != '\t' && *e != '\n')
			e++;
		if (e > p) {
			*e = 0;
			char inner[200];
			close(fd);
			k = classify(p, inner, sizeof(inner), 0);
			if (k != CW_ELF_PRELOADABLE && k != CW_ELF_UNKNOWN && why && cap) {
				size_t n = cw_put(why, cap, 0, inner);
				n = cw_put(why, cap, n, " (interpreter ");
				n = cw_put(why, cap, n, p);
				cw_put(why, cap, n, ")");
			}
			return k;
		}
	}
	close(fd);
	return k;
}

enum cw_elf_kind cw_elf_kind(const char *path, char *why, size_t cap)
{
	return classify(path, why, cap, 1);
}

int cw_elf_resolve(const char *file, const char *path_env, char *out, size_t cap)
{
	if (!cap)
		return -1;
	cw_put(out, cap, 0, file);
	if (!*file || strchr(file, '/'))
		return 0;
	const char *p = path_env ? path_env : "/usr/local/bin:/usr/bin:/bin";
	for (;;) {
		const char *e = strchr(p, ':');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		char cand[4096];
		size_t n = 0;
		if (len == 0)
			n = cw_put(cand, sizeof(cand), n, ".");   /* empty entry: the current directory */
		else if (len < sizeof(cand) - 1) {
			memcpy(cand, p, len);
			n = len;
			cand[n] = 0;
		}
		if (n) {
			n = cw_put(cand, sizeof(cand), n, "/");
			n = cw_put(cand, sizeof(cand), n, file);
			struct stat st;
			if (n + 1 < sizeof(cand) && stat(cand, &st) == 0 && S_ISREG(st.st_mode) &&
			    access(cand, X_OK) == 0) {
				cw_put(out, cap, 0, cand);
				return 0;
			}
		}
		if (!e)
			break;
		p = e + 1;
	}
	return -1;
}

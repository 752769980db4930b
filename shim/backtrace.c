/* Backtraces with libunwind's local unwinder: no allocation, no locks of
 * libc's (dladdr aside), so it may run inside close() from anywhere. */
#define UNW_LOCAL_ONLY
#include "backtrace.h"
#include "put.h"

#include <dlfcn.h>
#include <libunwind.h>
#include <string.h>
#include <unistd.h>


/* The main program's dladdr() name is "": show its path instead. */
static char exe_path[256];

void cw_backtrace_init(void)
{
	ssize_t n = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
	exe_path[n > 0 ? n : 0] = 0;
}

__thread int cw_in_unwind __attribute__((tls_model("initial-exec")));

static void walk(struct cw_event *ev, int max);

void cw_backtrace(struct cw_event *ev, int max)
{
	cw_in_unwind++;
	walk(ev, max);
	cw_in_unwind--;
}

static void walk(struct cw_event *ev, int max)
{
	ev->nframes = 0;
	if (max > CW_BT_LIMIT)
		max = CW_BT_LIMIT;
	if (max <= 0)
		return;
	Dl_info self;
	void *self_base = dladdr((void *)cw_backtrace, &self) ? self.dli_fbase : NULL;

	unw_context_t uc;
	unw_cursor_t cur;
	if (unw_getcontext(&uc) < 0 || unw_init_local(&cur, &uc) < 0)
		return;
	/* unw_get_proc_name() allocates and reads ELF files: not for a close()
	 * made in a signal handler (the handler may have interrupted malloc).
	 * A first, cheap walk looks for the kernel's signal frame; then names
	 * come from dladdr() only (exported symbols; else the offset in the object). */
	int in_signal = 0, guard = 0;
	while (!in_signal && unw_step(&cur) > 0 && guard++ < 256)
		in_signal = unw_is_signal_frame(&cur) > 0;
	if (unw_init_local(&cur, &uc) < 0)
		return;
	guard = 0;
	while (ev->nframes < max && unw_step(&cur) > 0 && guard++ < 256) {
		unw_word_t ip = 0, off = 0;
		unw_get_reg(&cur, UNW_REG_IP, &ip);
		Dl_info info;
		int have_obj = dladdr((void *)ip, &info) && info.dli_fname;
		if (have_obj && self_base && info.dli_fbase == self_base)
			continue; /* our own hooks: not the call site */
		char name[96];
		char *frame = ev->frames[ev->nframes];
		size_t n = 0;
		if (!in_signal && unw_get_proc_name(&cur, name, sizeof name, &off) == 0) {
			n = cw_put(frame, CW_FRAME_TEXT, n, name);
			n = cw_put(frame, CW_FRAME_TEXT, n, "+");
			n = cw_put_hex(frame, CW_FRAME_TEXT, n, off);
		} else if (in_signal && have_obj && info.dli_sname && info.dli_saddr) {
			n = cw_put(frame, CW_FRAME_TEXT, n, info.dli_sname);
			n = cw_put(frame, CW_FRAME_TEXT, n, "+");
			n = cw_put_hex(frame, CW_FRAME_TEXT, n, ip - (unw_word_t)info.dli_saddr);
		} else if (have_obj) {
			n = cw_put_hex(frame, CW_FRAME_TEXT, n, ip - (unw_word_t)info.dli_fbase);
		} else {
			n = cw_put_hex(frame, CW_FRAME_TEXT, n, ip);
		}
		n = cw_put(frame, CW_FRAME_TEXT, n, " (");
		n = cw_put(frame, CW_FRAME_TEXT, n, !have_obj ? "?" : info.dli_fname[0] ? info.dli_fname : exe_path[0] ? exe_path : "?");
		cw_put(frame, CW_FRAME_TEXT, n, ")");
		ev->nframes++;
	}
}

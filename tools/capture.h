/* Live packet capture to a pcap file with libpcap, used by `cw-pcap capture`
 * and `closewatch run --pcap`. */
#ifndef CW_CAPTURE_H
#define CW_CAPTURE_H

#include <signal.h>
#include <stddef.h>

struct cw_capture;

/* Open iface (NULL: "any") with a BPF filter (NULL: "tcp"), write to out.
 * Capturing starts here: a packet sent after this returns is recorded.
 * On failure returns NULL with a message in err; *perm is set to 1 when the
 * cause is missing privilege. */
struct cw_capture *cw_capture_open(const char *iface, const char *filter, const char *out,
				   char *err, size_t errlen, int *perm);

/* Capture until *stop (may be NULL: a signal handler's flag) becomes non-zero,
 * or cw_capture_close is called from another thread (checked every 100 ms).
 * Flushes the file at least every 100 ms. Returns 0, or -1 on a capture error. */
int cw_capture_loop(struct cw_capture *c, volatile sig_atomic_t *stop);

/* Start cw_capture_loop in a thread (all signals blocked in it). */
int cw_capture_start_thread(struct cw_capture *c);

/* Stop the thread (if any), read what is still buffered, flush and close
 * the file. Returns 0, or -1 if writing failed. Fills packet and drop
 * counts when the pointers are not NULL. */
int cw_capture_close(struct cw_capture *c, unsigned long *packets, unsigned long *dropped);

#endif

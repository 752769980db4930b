/* Live capture with libpcap into a standard pcap file. */
#include "capture.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CW_SNAPLEN 256           /* link + IP + TCP headers with options */
#define CW_BUFSIZE (8 << 20)     /* kernel ring: bursts of small packets */
#define CW_TICK_MS 100

struct cw_capture {
	pcap_t *p;
	pcap_dumper_t *d;
	unsigned long count;
	int failed;
	pthread_t thread;
	int has_thread;
	atomic_int stop;          /* set by cw_capture_close for the thread */
};

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct cw_capture *cw_capture_open(const char *iface, const char *filter, const char *out,
				   char *err, size_t errlen, int *perm)
{
	char ebuf[PCAP_ERRBUF_SIZE] = "";
	*perm = 0;
	if (!iface)
		iface = "any";
	if (!filter)
		filter = "tcp";
	pcap_t *p = pcap_create(iface, ebuf);
	if (!p) {
		snprintf(err, errlen, "cannot capture on %s: %s", iface, ebuf);
		return NULL;
	}
	pcap_set_snaplen(p, CW_SNAPLEN);
	pcap_set_immediate_mode(p, 1);
	pcap_set_timeout(p, CW_TICK_MS);
	pcap_set_buffer_size(p, CW_BUFSIZE);
	int rc = pcap_activate(p);
	if (rc < 0) {
		if (rc == PCAP_ERROR_PERM_DENIED || rc == PCAP_ERROR_PROMISC_PERM_DENIED) {
			*perm = 1;
			snprintf(err, errlen, "no permission to capture on %s: run as root or give the "
				 "binary CAP_NET_RAW (%s)", iface, pcap_geterr(p));
		} else if (rc == PCAP_ERROR_NO_SUCH_DEVICE) {
			snprintf(err, errlen, "cannot capture on %s: no such interface (%s)", iface,
				 pcap_geterr(p));
		} else {
			snprintf(err, errlen, "cannot capture on %s: %s", iface,
				 rc == PCAP_ERROR ? pcap_geterr(p) : pcap_statustostr(rc));
		}
		pcap_close(p);
		return NULL;
	}
	if (rc > 0)
		fprintf(stderr, "%s: warning: %s: %s\n", cw_progname, iface, pcap_statustostr(rc));
	struct bpf_program prog;
	if (pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) != 0) {
		snprintf(err, errlen, "bad capture filter '%s': %s", filter, pcap_geterr(p));
		pcap_close(p);
		return NULL;
	}
	rc = pcap_setfilter(p, &prog);
	pcap_freecode(&prog);
	if (rc != 0) {
		snprintf(err, errlen, "cannot set filter '%s': %s", filter, pcap_geterr(p));
		pcap_close(p);
		return NULL;
	}
	pcap_dumper_t *d = pcap_dump_open(p, out);
	if (!d) {
		snprintf(err, errlen, "cannot write %s: %s", out, pcap_geterr(p));
		pcap_close(p);
		return NULL;
	}
	pcap_dump_flush(d); /* the file header is there even if nothing arrives */
	if (pcap_setnonblock(p, 1, ebuf) != 0) {
		snprintf(err, errlen, "cannot capture on %s: %s", iface, ebuf);
		pcap_dump_close(d);
		pcap_close(p);
		return NULL;
	}
	/* `closewatch run` starts the program after this: it must not inherit
	 * the capture socket or the pcap file (they would shift its fd numbers). */
	int fds[2] = {pcap_get_selectable_fd(p), fileno(pcap_dump_file(d))};
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			fcntl(fds[i], F_SETFD, fcntl(fds[i], F_GETFD) | FD_CLOEXEC);
	struct cw_capture *c = cw_xcalloc(1, sizeof(*c));
	c->p = p;
	c->d = d;
	return c;
}

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *data)
{
	struct cw_capture *c = (struct cw_capture *)user;
	pcap_dump((u_char *)c->d, h, data);
	c->count++;
}

/* Read whatever is buffered now, in bounded rounds. */
static int drain(struct cw_capture *c)
{
	for (int i = 0; i < 1000; i++) {
		int n = pcap_dispatch(c->p, -1, on_packet, (u_char *)c);
		if (n < 0) {
			if (n == PCAP_ERROR_BREAK)
				return 0;
			cw_err("capture: %s", pcap_geterr(c->p));
			c->failed = 1;
			return -1;
		}
		if (n == 0)
			return 0;
	}
	return 0;
}

int cw_capture_loop(struct cw_capture *c, volatile sig_atomic_t *stop)
{
	int fd = pcap_get_selectable_fd(c->p);
	double last_flush = now_mono();
	while (!atomic_load(&c->stop) && !(stop && *stop)) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int r = fd >= 0 ? poll(&pfd, 1, CW_TICK_MS) : 1;
		if (r < 0 && errno != EINTR) {
			cw_err("capture: poll: %s", strerror(errno));
			c->failed = 1;
			return -1;
		}
		if (drain(c) != 0)
			return -1;
		if (now_mono() - last_flush >= CW_TICK_MS / 1000.0) {
			pcap_dump_flush(c->d);
			last_flush = now_mono();
		}
		if (fd < 0) {
			struct timespec ts = {0, 10 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
	}
	return 0;
}

static void *thread_main(void *arg)
{
	struct cw_capture *c = arg;
	cw_capture_loop(c, NULL);
	return NULL;
}

int cw_capture_start_thread(struct cw_capture *c)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&c->thread, NULL, thread_main, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		cw_err("cannot start the capture thread: %s", strerror(rc));
		return -1;
	}
	c->has_thread = 1;
	return 0;
}

int cw_capture_close(struct cw_capture *c, unsigned long *packets, unsigned long *dropped)
{
	if (c->has_thread) {
		atomic_store(&c->stop, 1);
		pthread_join(c->thread, NULL);
	}
	drain(c);
	struct pcap_stat st;
	memset(&st, 0, sizeof(st));
	if (pcap_stats(c->p, &st) != 0)
		memset(&st, 0, sizeof(st));
	int rc = c->failed ? -1 : 0;
	if (pcap_dump_flush(c->d) != 0) {
		cw_err("capture: cannot write the capture file: %s", strerror(errno));
		rc = -1;
	}
	pcap_dump_close(c->d);
	pcap_close(c->p);
	if (packets)
		*packets = c->count;
	if (dropped)
		*dropped = st.ps_drop;
	free(c);
	return rc;
}

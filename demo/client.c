/* upload-client — uploads a file over HTTP/1.1 and reads the answer, the way
 * most HTTP libraries do it: send the request head and the whole body, then
 * read the answer.
 *
 *   client [-s UPLOAD_BYTES] [-t SECONDS] HOST PORT
 *
 * Prints what it got: how much of the upload went out, the status line, how
 * many bytes of the answer arrived, and how the connection ended (EOF, or
 * "connection reset by peer"). The last line is for scripts:
 *
 *   result: status=413 answer=N body=N expected=M sent=S end=eof|reset|timeout|error
 *
 * (answer: all bytes received, head included; body: bytes after the head;
 * expected: the Content-Length announced, -1 if no head arrived.)
 *
 * Exit status: 0 if the whole answer arrived and the connection ended with
 * EOF, 1 if the answer was lost or cut short, 2 on usage or connect errors. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

struct answer {
	char head[8192];
	size_t head_len;     /* bytes of head collected so far */
	int head_done;
	int status;
	char status_line[128];
	long content_length; /* -1: not announced */
	long body;           /* body bytes received */
	long total;          /* all bytes received */
};

static void take(struct answer *a, const char *buf, size_t n)
{
	a->total += (long)n;
	if (a->head_done) {
		a->body += (long)n;
		return;
	}
	size_t room = sizeof a->head - 1 - a->head_len;
	size_t k = n < room ? n : room;
	memcpy(a->head + a->head_len, buf, k);
	a->head_len += k;
	a->head[a->head_len] = 0;
	char *end = strstr(a->head, "\r\n\r\n");
	if (!end)
		return;
	a->head_done = 1;
	size_t used = (size_t)(end - a->head) + 4;
	a->body = (long)(a->head_len - used) + (long)(n - k);
	size_t sl = strcspn(a->head, "\r\n");
	if (sl >= sizeof a->status_line)
		sl = sizeof a->status_line - 1;
	memcpy(a->status_line, a->head, sl);
	a->status_line[sl] = 0;
	sscanf(a->head, "HTTP/%*d.%*d %d", &a->status);
	for (char *p = a->head; (p = strchr(p, '\n')) && p < end;) {
		p++;
		if (strncasecmp(p, "Content-Length:", 15) == 0)
			a->content_length = strtol(p + 15, NULL, 10);
	}
}

static int connect_to(const char *host, const char *port, double limit)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		fprintf(stderr, "client: %s:%s: %s\n", host, port, gai_strerror(rc));
		return -1;
	}
	int fd = -1;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		fprintf(stderr, "client: connect to %s:%s: %s\n", host, port, strerror(errno));
	} else {
		/* Don't hang forever on a stuck server. */
		struct timeval tv = { .tv_sec = (time_t)limit,
				      .tv_usec = (suseconds_t)((limit - (double)(time_t)limit) * 1e6) };
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	}
	freeaddrinfo(res);
	return fd;
}

static const char *end_name(int err)
{
	if (err == 0)
		return "eof";
	if (err == ECONNRESET || err == EPIPE)
		return "reset";
	if (err == EAGAIN || err == EWOULDBLOCK)
		return "timeout";
	return "error";
}

int main(int argc, char **argv)
{
	long upload = 8L << 20;
	double limit = 20;
	int opt;
	while ((opt = getopt(argc, argv, "s:t:")) != -1) {
		switch (opt) {
		case 's': upload = atol(optarg); break;
		case 't': limit = atof(optarg); break;
		default: goto usage;
		}
	}
	if (argc - optind != 2 || upload < 0 || limit <= 0)
		goto usage;
	const char *host = argv[optind], *port = argv[optind + 1];

	int fd = connect_to(host, port, limit);
	if (fd < 0)
		return 2;

	/* A buffered writer: the request head and the start of the body go out
	 * together, then the body 64 KiB at a time. */
	static char buf[65536];
	int hl = snprintf(buf, sizeof buf,
			  "POST /upload HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/octet-stream\r\n"
			  "Content-Length: %ld\r\n\r\n", host, port, upload);
	printf("client: uploading %ld bytes to %s:%s\n", upload, host, port);
	fflush(stdout);

	long sent = 0, total = hl + upload;
	int send_err = 0;
	size_t fill = (size_t)hl;
	while (sent < total) {
		size_t room = sizeof buf - fill;
		long left = total - sent - (long)fill;
		size_t k = left < (long)room ? (size_t)left : room;
		memset(buf + fill, 'u', k);
		fill += k;
		ssize_t w = send(fd, buf, fill, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			send_err = errno;
			break;
		}
		sent += w;
		memmove(buf, buf + w, fill - (size_t)w);
		fill -= (size_t)w;
	}
	long body_sent = sent > hl ? sent - hl : 0;
	if (send_err)
		printf("client: upload failed after %ld of %ld bytes: %s\n", body_sent, upload,
		       strerror(send_err));
	else
		printf("client: uploaded all %ld bytes, reading the answer\n", upload);

	/* Read the answer to the end (the server says Connection: close).
	 * After a reset reported by send(), the kernel reports it no more:
	 * recv() then returns what is left, then 0. */
	struct answer a = { .content_length = -1 };
	int recv_err = 0;
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		if (r > 0) {
			take(&a, buf, (size_t)r);
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		recv_err = r < 0 ? errno : 0;
		break;
	}
	close(fd);

	const char *end = end_name(recv_err);
	if (send_err == ECONNRESET || send_err == EPIPE)
		end = "reset";
	else if (send_err && recv_err == 0)
		end = end_name(send_err);
	if (a.head_done)
		printf("client: answer: %s\n", a.status_line);
	else
		printf("client: answer: none (%ld bytes, no complete status line)\n", a.total);
	if (a.content_length >= 0)
		printf("client: answer body: %ld of %ld bytes%s\n", a.body, a.content_length,
		       a.body < a.content_length ? " -- the rest was lost" : " -- complete");
	printf("client: connection ended: %s\n",
	       !strcmp(end, "eof") ? "EOF (the server closed normally)"
	       : !strcmp(end, "reset") ? "connection reset by peer"
	       : !strcmp(end, "timeout") ? "timed out" : strerror(recv_err ? recv_err : send_err));
	printf("result: status=%d answer=%ld body=%ld expected=%ld sent=%ld end=%s\n", a.status,
	       a.total, a.body, a.content_length, body_sent, end);
	int complete = a.head_done && a.content_length >= 0 && a.body >= a.content_length;
	return complete && !strcmp(end, "eof") ? 0 : 1;

usage:
	fprintf(stderr, "usage: %s [-s UPLOAD_BYTES] [-t SECONDS] HOST PORT\n", argv[0]);
	return 2;
}

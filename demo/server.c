/* upload-server — a tiny HTTP upload endpoint, written the way many are.
 *
 *   server [-p PORT] [-n CONNECTIONS] [-m MAX_UPLOAD] [-e ERROR_PAGE_BYTES]
 *
 * It accepts POST uploads of up to MAX_UPLOAD bytes (default 1 MiB). When a
 * request announces a bigger body, it does what every tutorial suggests: it
 * answers at once with "413 Payload Too Large" and closes the connection,
 * without wasting time reading an upload it is going to refuse.
 *
 * That close() is the bug this demo is about. The client is still sending;
 * its bytes sit unread in this socket's receive queue, so the kernel answers
 * the close with a RST instead of a FIN and throws away the part of the 413
 * answer that has not reached the client yet. The client sees "connection
 * reset by peer" and never learns why its upload failed.
 *
 * The error page is padded to 1 MiB (-e) so that the loss shows on any
 * machine: with a real, short page the same close loses the answer only
 * sometimes, depending on timing, which is exactly what makes it so hard to
 * debug in production.
 *
 * Nothing in here knows about closewatch. Prints "listening on ADDR" on
 * stdout once ready, one line per connection, and exits after CONNECTIONS
 * connections (default: serve forever). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define HEAD_MAX 8192

static long max_upload = 1 << 20;
static long error_page_bytes = 1 << 20;

static void logmsg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("server: ", stdout);
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
	va_end(ap);
}

static void die(const char *what)
{
	fprintf(stderr, "server: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read until the end of the request head ("\r\n\r\n"). Returns the bytes
 * read (head plus perhaps the start of the body), 0 on EOF, -1 on error. */
static ssize_t read_head(int fd, char *buf, size_t cap, size_t *head_len)
{
	size_t got = 0;
	while (got < cap - 1) {
		ssize_t n = read(fd, buf + got, cap - 1 - got);
		if (n <= 0)
			return n;
		got += (size_t)n;
		buf[got] = 0;
		char *end = strstr(buf, "\r\n\r\n");
		if (end) {
			*head_len = (size_t)(end - buf) + 4;
			return (ssize_t)got;
		}
	}
	errno = EMSGSIZE;
	return -1;
}

static long content_length(const char *head)
{
	for (const char *p = head; (p = strchr(p, '\n')) != NULL;) {
		p++;
		if (strncasecmp(p, "Content-Length:", 15) == 0)
			return strtol(p + 15, NULL, 10);
	}
	return -1;
}

/* The error page: a short explanation, padded to error_page_bytes.
 * Returns the bytes of the whole answer, or -1 if writing failed. */
static long send_error(int fd, int code, const char *reason, long limit)
{
	size_t len = (size_t)error_page_bytes;
	char *body = malloc(len + 1);
	if (!body)
		return -1;
	int n = snprintf(body, len + 1,
			 "<html><body><h1>%d %s</h1>\n<p>Uploads are limited to %ld bytes.</p>\n<!--",
			 code, reason, limit);
	if (n < 0 || (size_t)n > len)
		n = 0;
	memset(body + n, '.', len - (size_t)n);
	if (len >= 16)
		memcpy(body + len - 16, "-->\n</body></htm", 16);

	char head[256];
	int hl = snprintf(head, sizeof head,
			  "HTTP/1.1 %d %s\r\nContent-Type: text/html\r\nContent-Length: %zu\r\n"
			  "Connection: close\r\n\r\n",
			  code, reason, len);
	long rc = write_all(fd, head, (size_t)hl) < 0 || write_all(fd, body, len) < 0
		  ? -1 : hl + (long)len;
	free(body);
	return rc;
}

/* One connection: read the request head; refuse uploads that are too big,
 * otherwise read the body and answer 200. Always closes fd. */
void handle_upload(int fd, const char *who)
{
	char buf[HEAD_MAX];
	size_t head_len = 0;
	ssize_t got = read_head(fd, buf, sizeof buf, &head_len);
	if (got <= 0) {
		logmsg("%s: no request (%s)", who, got < 0 ? strerror(errno) : "EOF");
		close(fd);
		return;
	}
	long len = content_length(buf);
	if (len > max_upload) {
		/* Too big: say so and hang up. Don't bother reading the rest. */
		long sent = send_error(fd, 413, "Payload Too Large", max_upload);
		if (sent < 0)
			logmsg("%s: writing the 413 answer failed: %s", who, strerror(errno));
		close(fd);
		logmsg("%s: refused an upload of %ld bytes (limit %ld): answered 413 (%ld bytes), "
		       "connection closed", who, len, max_upload, sent);
		return;
	}
	long body = (long)got - (long)head_len;
	char chunk[65536];
	while (len > 0 && body < len) {
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n <= 0)
			break;
		body += n;
	}
	char answer[160];
	int al = snprintf(answer, sizeof answer,
			  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Stored-Bytes: %ld\r\n"
			  "Connection: close\r\n\r\n", body);
	if (write_all(fd, answer, (size_t)al) < 0)
		logmsg("%s: writing the answer failed: %s", who, strerror(errno));
	close(fd);
	logmsg("%s: stored %ld bytes: 200 sent, connection closed", who, body);
}

int main(int argc, char **argv)
{
	int port = 0, opt;
	long connections = -1;
	while ((opt = getopt(argc, argv, "p:n:m:e:")) != -1) {
		switch (opt) {
		case 'p': port = atoi(optarg); break;
		case 'n': connections = atol(optarg); break;
		case 'm': max_upload = atol(optarg); break;
		case 'e': error_page_bytes = atol(optarg); break;
		default:
			fprintf(stderr, "usage: %s [-p PORT] [-n CONNECTIONS] [-m MAX_UPLOAD] "
					"[-e ERROR_PAGE_BYTES]\n", argv[0]);
			return 2;
		}
	}
	if (error_page_bytes < 64)
		error_page_bytes = 64;
	signal(SIGPIPE, SIG_IGN);

	int ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0)
		die("socket");
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0)
		die("bind");
	if (listen(ls, 16) < 0)
		die("listen");
	socklen_t sl = sizeof sa;
	getsockname(ls, (struct sockaddr *)&sa, &sl);
	logmsg("listening on 127.0.0.1:%d", ntohs(sa.sin_port));

	for (long served = 0; connections < 0 || served < connections; served++) {
		struct sockaddr_in peer;
		socklen_t pl = sizeof peer;
		int fd = accept(ls, (struct sockaddr *)&peer, &pl);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			die("accept");
		}
		/* A client that stops reading must not hold us forever. */
		struct timeval tv = { .tv_sec = 10 };
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		char who[64];
		snprintf(who, sizeof who, "%s:%d", inet_ntoa(peer.sin_addr), ntohs(peer.sin_port));
		handle_upload(fd, who);
	}
	close(ls);
	return 0;
}

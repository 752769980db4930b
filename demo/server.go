// upload-server in Go — the fourth act of the demo: demo/server.c's upload
// endpoint written with Go's net package, the same mistake included.
//
//	server-go [-p PORT] [-n CONNECTIONS] [-m MAX_UPLOAD] [-e ERROR_PAGE_BYTES]
//
// A request that announces a body bigger than MAX_UPLOAD is answered at once
// with "413 Payload Too Large" (a page padded to ERROR_PAGE_BYTES) and the
// connection is closed without reading the rest of the upload: the kernel
// answers that close with a RST and the client loses the end of the answer.
//
// Go makes its system calls itself, so LD_PRELOAD cannot reach it: closewatch
// watches it through the trap (`closewatch run` picks that on its own).
// Nothing in here knows about closewatch. Prints what demo/server.c prints.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

func logmsg(format string, a ...interface{}) {
	fmt.Printf("server: "+format+"\n", a...)
}

// readHead reads until the end of the request head; returns what was read.
func readHead(c net.Conn) ([]byte, int, error) {
	buf := make([]byte, 0, 8192)
	chunk := make([]byte, 8192)
	for len(buf) < 8192 {
		n, err := c.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			return buf, i + 4, nil
		}
		if err != nil {
			return buf, 0, err
		}
	}
	return buf, 0, fmt.Errorf("request head too long")
}

func contentLength(head string) int64 {
	for _, line := range strings.Split(head, "\r\n") {
		if len(line) > 15 && strings.EqualFold(line[:15], "Content-Length:") {
			n, _ := strconv.ParseInt(strings.TrimSpace(line[15:]), 10, 64)
			return n
		}
	}
	return -1
}

func handle(c net.Conn, maxUpload int64, page int) {
	who := c.RemoteAddr().String()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf, headLen, err := readHead(c)
	if err != nil {
		logmsg("%s: no request (%v)", who, err)
		c.Close()
		return
	}
	n := contentLength(string(buf[:headLen]))
	if n > maxUpload {
		// Too big: say so and hang up. Don't bother reading the rest.
		body := []byte(fmt.Sprintf("<html><body><h1>413 Payload Too Large</h1>\n"+
			"<p>Uploads are limited to %d bytes.</p>\n<!--", maxUpload))
		if len(body) < page {
			body = append(body, bytes.Repeat([]byte("."), page-len(body))...)
		}
		head := fmt.Sprintf("HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/html\r\n"+
			"Content-Length: %d\r\nConnection: close\r\n\r\n", len(body))
		answer := append([]byte(head), body...)
		sent := int64(len(answer))
		if _, err := c.Write(answer); err != nil {
			logmsg("%s: writing the 413 answer failed: %v", who, err)
			sent = -1
		}
		c.Close()
		logmsg("%s: refused an upload of %d bytes (limit %d): answered 413 (%d bytes), "+
			"connection closed", who, n, maxUpload, sent)
		return
	}
	got := int64(len(buf) - headLen)
	chunk := make([]byte, 65536)
	for got < n {
		k, err := c.Read(chunk)
		got += int64(k)
		if err != nil {
			break
		}
	}
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Stored-Bytes: %d\r\n"+
		"Connection: close\r\n\r\n", got)
	c.Close()
	logmsg("%s: stored %d bytes: 200 sent, connection closed", who, got)
}

func main() {
	port := flag.Int("p", 0, "port")
	conns := flag.Int("n", -1, "connections")
	maxUpload := flag.Int64("m", 1<<20, "max upload")
	page := flag.Int("e", 1<<20, "error page bytes")
	flag.Parse()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(*port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "server: listen: %v\n", err)
		os.Exit(1)
	}
	logmsg("listening on %s", ln.Addr())
	for served := 0; *conns < 0 || served < *conns; served++ {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintf(os.Stderr, "server: accept: %v\n", err)
			os.Exit(1)
		}
		handle(c, *maxUpload, *page)
	}
	ln.Close()
}

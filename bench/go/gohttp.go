// gohttp — the Go server of `make bench`'s trap-drain row: net/http on
// 127.0.0.1:PORT (0 = any; prints "port P"), answering every request with a
// small page. wrk asks for Connection: close, so each answer ends with the
// server's close of an ESTABLISHED connection: a close drain mode lingers.
// Runs until killed.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
)

func main() {
	port := 0
	if len(os.Args) > 1 {
		port, _ = strconv.Atoi(os.Args[1])
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "gohttp: listen: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
	page := []byte("<html><body>" + strings.Repeat("closewatch ", 50) + "</body></html>\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write(page)
	})
	fmt.Fprintln(os.Stderr, http.Serve(ln, h))
	os.Exit(1)
}

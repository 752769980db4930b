// cwgo — the Go counterpart of tests/progs/cwprog.c: a small socket program
// driven by a scenario on argv, which knows nothing of closewatch. Go makes
// its system calls without libc, so LD_PRELOAD never sees its closes; the
// tests run it under `closewatch run --via trap`.
//
// Built twice: with cgo (Debian's default for net: loads glibc) and with
// CGO_ENABLED=0 (static). Actions (a subset of cwprog's, same output):
//
//	listen HOST PORT [BACKLOG]  raw TCP listener; prints "fd N", "port P"
//	accept                      accept on the listener; prints "fd N", "pport P"
//	connect HOST PORT           prints "fd N", "lport P"
//	open PATH                   open a file read-write (e.g. /dev/null); prints "fd N"
//	read N | write N            exactly N bytes on the current fd
//	waitinq N | waitoutq0       poll SIOCINQ / SIOCOUTQ (10 s bound)
//	waitbacklog N               poll TCP_INFO of the listener until N are queued
//	linger ON SECS              SO_LINGER on the current fd
//	close | close-listener      close(cur) / close(listener)
//	shutdown rd|wr|rdwr         prints "shutdown R"
//	as NAME                     name the current fd (an FD argument may be a NAME)
//	dup2 FD                     dup3(cur, FD, 0); prints "dup2 R"
//	close-range LO HI           close_range(LO, HI, 0); prints "close_range R"
//	cloexec                     FD_CLOEXEC on cur
//	exec PROG ARGS...           execve: the rest of argv is the new program's
//	threads T N                 T goroutines locked to OS threads, each N socketpair+close
//	                            (2N closes each); prints "threads done"
//	early PORT SIZE             net.Listen on 127.0.0.1:PORT (0 = any, prints "port P"),
//	                            accept one connection, read 1 byte, write SIZE bytes
//	                            answer and close (unread upload: a reset); "closed"
//	early-http PORT SIZE N      the same as an HTTP server, N connections one after
//	                            another: read the request head's first bytes, answer
//	                            "HTTP/1.1 200 OK" with SIZE bytes, Connection: close,
//	                            without reading the upload; "closed" after each
//	say TEXT | pid | sleep MS | wait (one line on stdin)
//	exit CODE                   os.Exit without closing anything
//
// A failing action prints "error ACTION: reason" on stderr and exits 99.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

var (
	names    = map[string]int{}
	cur, lfd = -1, -1
	action   string
	stdin    = bufio.NewReader(os.Stdin)
)

func die(why string) {
	fmt.Fprintf(os.Stderr, "error %s: %s\n", action, why)
	os.Exit(99)
}

func check(err error, what string) {
	if err != nil {
		die(what + ": " + err.Error())
	}
}

func num(s string) int {
	v, err := strconv.Atoi(s)
	if err != nil {
		die("bad number " + s)
	}
	return v
}

func fdarg(s string) int {
	if fd, ok := names[s]; ok {
		return fd
	}
	return num(s)
}

func out(f string, a ...interface{}) { fmt.Printf(f+"\n", a...) }

func sockaddr(host string, port int) (syscall.Sockaddr, int) {
	ip := net.ParseIP(host)
	if ip == nil {
		die("bad host " + host)
	}
	if ip4 := ip.To4(); ip4 != nil && host != "::ffff:"+ip4.String() {
		sa := &syscall.SockaddrInet4{Port: port}
		copy(sa.Addr[:], ip4)
		return sa, syscall.AF_INET
	}
	sa := &syscall.SockaddrInet6{Port: port}
	copy(sa.Addr[:], ip.To16())
	return sa, syscall.AF_INET6
}

func portOf(sa syscall.Sockaddr) int {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return a.Port
	case *syscall.SockaddrInet6:
		return a.Port
	}
	return 0
}

func ioctlInt(fd int, req uintptr) int {
	var v int32
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(&v)))
	if e != 0 {
		die("ioctl: " + e.Error())
	}
	return int(v)
}

func poll(what string, cond func() bool) {
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			die("timeout waiting for " + what)
		}
	}
}

func backlog(fd int) int {
	// struct tcp_info: tcpi_unacked (the accept queue of a listener) at offset 24.
	var info [232]byte
	l := uint32(len(info))
	_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP,
		syscall.TCP_INFO, uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		die("TCP_INFO: " + e.Error())
	}
	return int(*(*uint32)(unsafe.Pointer(&info[24])))
}

func errname(e error) string {
	if e == nil {
		return "0"
	}
	if en, ok := e.(syscall.Errno); ok {
		switch en {
		case syscall.EBADF:
			return "EBADF"
		case syscall.ENOTCONN:
			return "ENOTCONN"
		case syscall.EINVAL:
			return "EINVAL"
		}
	}
	return e.Error()
}

func threads(t, n int) {
	var wg sync.WaitGroup
	for k := 0; k < t; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			for j := 0; j < n; j++ {
				fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
				check(err, "socketpair")
				check(syscall.Close(fds[0]), "close")
				check(syscall.Close(fds[1]), "close")
			}
		}()
	}
	wg.Wait()
}

func early(port, size int) {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	check(err, "listen")
	out("port %d", ln.Addr().(*net.TCPAddr).Port)
	c, err := ln.Accept()
	check(err, "accept")
	buf := make([]byte, 1)
	_, err = c.Read(buf)
	check(err, "read")
	answer := make([]byte, size)
	_, err = c.Write(answer)
	check(err, "write")
	check(c.Close(), "close")
	out("closed")
	check(ln.Close(), "close listener")
}

func earlyHTTP(port, size, n int) {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	check(err, "listen")
	out("port %d", ln.Addr().(*net.TCPAddr).Port)
	head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", size)
	answer := append([]byte(head), make([]byte, size)...)
	buf := make([]byte, 1)
	for k := 0; k < n; k++ {
		c, err := ln.Accept()
		check(err, "accept")
		_, err = c.Read(buf)
		check(err, "read")
		_, err = c.Write(answer)
		check(err, "write")
		check(c.Close(), "close")
		out("closed")
	}
	check(ln.Close(), "close listener")
}

// The scenario runs on the process's first thread, as a C program's would: a
// record's tid is then its pid, and the tests can say so. Without this the Go
// scheduler may move the main goroutine to any of its threads between actions.
func init() {
	runtime.LockOSThread()
}

func main() {
	args := os.Args[1:]
	need := func(i, k int) {
		if i+k >= len(args) {
			die("missing argument")
		}
	}
	for i := 0; i < len(args); i++ {
		action = args[i]
		switch action {
		case "listen":
			need(i, 2)
			sa, af := sockaddr(args[i+1], num(args[i+2]))
			i += 2
			bl := 16
			if i+1 < len(args) {
				if v, err := strconv.Atoi(args[i+1]); err == nil {
					bl = v
					i++
				}
			}
			fd, err := syscall.Socket(af, syscall.SOCK_STREAM, 0)
			check(err, "socket")
			check(syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1), "setsockopt")
			check(syscall.Bind(fd, sa), "bind")
			check(syscall.Listen(fd, bl), "listen")
			got, err := syscall.Getsockname(fd)
			check(err, "getsockname")
			cur, lfd = fd, fd
			out("fd %d", fd)
			out("port %d", portOf(got))
		case "accept":
			fd, sa, err := syscall.Accept(lfd)
			check(err, "accept")
			cur = fd
			out("fd %d", fd)
			out("pport %d", portOf(sa))
		case "connect":
			need(i, 2)
			sa, af := sockaddr(args[i+1], num(args[i+2]))
			i += 2
			fd, err := syscall.Socket(af, syscall.SOCK_STREAM, 0)
			check(err, "socket")
			check(syscall.Connect(fd, sa), "connect")
			got, err := syscall.Getsockname(fd)
			check(err, "getsockname")
			cur = fd
			out("fd %d", fd)
			out("lport %d", portOf(got))
		case "open":
			need(i, 1)
			i++
			fd, err := syscall.Open(args[i], syscall.O_RDWR|syscall.O_CREAT, 0o600)
			check(err, "open")
			cur = fd
			out("fd %d", fd)
		case "read", "write":
			need(i, 1)
			i++
			n := num(args[i])
			buf := make([]byte, 65536)
			for n > 0 {
				k := len(buf)
				if n < k {
					k = n
				}
				var r int
				var err error
				if action == "read" {
					r, err = syscall.Read(cur, buf[:k])
				} else {
					r, err = syscall.Write(cur, buf[:k])
				}
				if err == syscall.EINTR {
					continue
				}
				check(err, action)
				if r == 0 {
					die("unexpected EOF")
				}
				n -= r
			}
		case "waitinq":
			need(i, 1)
			i++
			n := num(args[i])
			poll("inq", func() bool { return ioctlInt(cur, 0x541B /* SIOCINQ = FIONREAD */) >= n })
		case "waitoutq0":
			poll("outq 0", func() bool { return ioctlInt(cur, 0x5411 /* SIOCOUTQ = TIOCOUTQ */) == 0 })
		case "waitbacklog":
			need(i, 1)
			i++
			n := num(args[i])
			poll("backlog", func() bool { return backlog(lfd) >= n })
		case "linger":
			need(i, 2)
			l := syscall.Linger{Onoff: int32(num(args[i+1])), Linger: int32(num(args[i+2]))}
			i += 2
			check(syscall.SetsockoptLinger(cur, syscall.SOL_SOCKET, syscall.SO_LINGER, &l), "linger")
		case "close":
			if err := syscall.Close(cur); err != nil {
				out("close-err %d %s", cur, errname(err))
			}
		case "close-listener":
			if err := syscall.Close(lfd); err != nil {
				out("close-err %d %s", lfd, errname(err))
			}
		case "shutdown":
			need(i, 1)
			i++
			how := map[string]int{"rd": syscall.SHUT_RD, "wr": syscall.SHUT_WR, "rdwr": syscall.SHUT_RDWR}[args[i]]
			err := syscall.Shutdown(cur, how)
			if err != nil {
				out("shutdown -1 %s", errname(err))
			} else {
				out("shutdown 0")
			}
		case "dup2":
			need(i, 1)
			i++
			err := syscall.Dup3(cur, fdarg(args[i]), 0)
			if err != nil && cur == fdarg(args[i]) {
				err = nil // dup3 refuses oldfd == newfd where dup2 returns it
			}
			if err != nil {
				out("dup2 -1 %s", errname(err))
			} else {
				out("dup2 %s", args[i])
			}
		case "close-range":
			need(i, 2)
			lo := uint64(num(args[i+1]))
			hi := uint64(^uint32(0))
			if args[i+2] != "max" {
				hi = uint64(num(args[i+2]))
			}
			i += 2
			_, _, e := syscall.Syscall(436, uintptr(lo), uintptr(hi), 0) // close_range
			if e != 0 {
				out("close_range -1 %s", errname(e))
			} else {
				out("close_range 0")
			}
		case "as":
			need(i, 1)
			i++
			names[args[i]] = cur
		case "cloexec":
			_, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(cur), syscall.F_SETFD, syscall.FD_CLOEXEC)
			if e != 0 {
				die("fcntl: " + e.Error())
			}
		case "exec":
			need(i, 1)
			check(syscall.Exec(args[i+1], args[i+1:], os.Environ()), "exec")
		case "threads":
			need(i, 2)
			threads(num(args[i+1]), num(args[i+2]))
			i += 2
			out("threads done")
		case "early":
			need(i, 2)
			early(num(args[i+1]), num(args[i+2]))
			i += 2
		case "early-http":
			need(i, 3)
			earlyHTTP(num(args[i+1]), num(args[i+2]), num(args[i+3]))
			i += 3
		case "say":
			need(i, 1)
			i++
			out("%s", args[i])
		case "pid":
			out("pid %d", os.Getpid())
		case "sleep":
			need(i, 1)
			i++
			time.Sleep(time.Duration(num(args[i])) * time.Millisecond)
		case "wait":
			if _, err := stdin.ReadString('\n'); err != nil {
				die("stdin closed")
			}
		case "exit":
			need(i, 1)
			os.Exit(num(args[i+1]))
		default:
			die("unknown action")
		}
	}
}

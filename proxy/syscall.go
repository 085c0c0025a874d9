package proxy

import "syscall"

var (
	syscallEMFILE     = syscall.EMFILE
	syscallECONNRESET = syscall.ECONNRESET
	syscallEPIPE      = syscall.EPIPE
)

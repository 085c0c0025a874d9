package proxy

// growStack grows the calling goroutine's stack to 32 KiB in one step.
//
// A goroutine starts with a small stack that the runtime doubles, copying
// it, each time a call needs more. A session's goroutines reach about that
// depth in their first statement (the inspector's analysis and rules), and
// the copies on the way cost a short-lived connection more than its own
// bookkeeping. One frame this large makes the runtime size the stack for it
// at once, while the stack is still nearly empty and cheap to copy. (The
// same trick as CockroachDB's util/growstack.)
//
//go:noinline
func growStack() {
	var buf [16 << 10]byte
	touch(buf[:])
}

//go:noinline
func touch([]byte) {}

package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgproto3"
)

// The pipeline: every client message that the server answers leaves an entry
// in a FIFO queue, pushed by the client -> server goroutine before the message
// is forwarded and popped by the server -> client goroutine as the answers come
// back. Responses arrive in request order
// (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-PIPELINING),
// so the head of the queue always names the request a response belongs to,
// however many requests the client has in flight.

type pendingKind uint8

const (
	pendQuery          pendingKind = iota + 1 // Query: any results, then ReadyForQuery
	pendFunctionCall                          // FunctionCall: FunctionCallResponse, then ReadyForQuery
	pendParse                                 // ParseComplete
	pendBind                                  // BindComplete
	pendDescribeStmt                          // ParameterDescription, then RowDescription or NoData
	pendDescribePortal                        // RowDescription or NoData
	pendExecute                               // rows or COPY, then CommandComplete, EmptyQueryResponse or PortalSuspended
	pendClose                                 // CloseComplete
	pendSync                                  // ReadyForQuery
	// pendCopyEnd is a CopyDone or CopyFail sent while requests were in
	// flight: the server answers nothing to it, but if it begins a COPY
	// FROM STDIN before reaching it, that COPY ends there (see beginCopyIn).
	pendCopyEnd
)

// endsWithReady reports whether the entry is answered last by ReadyForQuery.
func (k pendingKind) endsWithReady() bool {
	return k == pendQuery || k == pendFunctionCall || k == pendSync
}

// executes reports whether the entry runs SQL on the server.
func (k pendingKind) executes() bool {
	return k == pendQuery || k == pendFunctionCall || k == pendExecute
}

type pending struct {
	kind pendingKind
	// batch is the number of the batch the entry belongs to: entries
	// answered by ReadyForQuery are numbered from 1 in the order they were
	// queued, and each other entry belongs to the next of them.
	batch  uint64
	stmt   *Statement
	ps     *preparedStmt // Parse, Describe statement
	portal *portal       // Bind, Describe portal, Execute
	// hidden marks a Describe or Query pgwarden sent itself: its answer is
	// not forwarded to the client.
	hidden bool
	// denied is set when the inspector refused the statement before it ran:
	// the server was sent a request that fails, and its error is replaced
	// with this verdict's.
	denied *Verdict
}

// preparedStmt is a statement created by Parse. desc is written by the
// server -> client goroutine when the Describe answer arrives.
type preparedStmt struct {
	sql       string
	paramOIDs []uint32 // the types the Parse declared
	mayCopyIn bool     // the SQL may begin a COPY FROM STDIN
	desc      []pgproto3.FieldDescription
	// described is set when the client asked to describe the statement
	// (client -> server goroutine only).
	described bool
	// descKnown is set once desc holds the statement's row description
	// (by the server -> client goroutine): the rows of its later portals
	// are described without asking the server again. PostgreSQL refuses
	// to run a prepared statement whose result type has changed.
	descKnown atomic.Bool
}

// portal is a portal created by Bind.
type portal struct {
	ps            *preparedStmt
	denied        *Verdict // the inspector refused the portal's statement
	resultFormats []int16
	params        []byte                      // the Bind's parameter section, if at most MaxKeptParams bytes
	desc          []pgproto3.FieldDescription // from Describe portal
	fields        []pgproto3.FieldDescription // desc or ps.desc with the Bind's result formats applied
	described     bool                        // the inspector has been shown fields (server -> client goroutine)
	descRequested bool                        // a Describe of the portal was sent (client -> server goroutine)
	stmt          *Statement                  // the statement its first Execute started
	batch         uint64                      // the batch of its Bind (see pendingQueue.nextBatch)
}

// rowFields returns the description of the portal's rows, if the client
// asked for one.
func (p *portal) rowFields() []pgproto3.FieldDescription {
	if p.desc != nil {
		return p.desc
	}
	if p.fields != nil || p.ps == nil || p.ps.desc == nil {
		return p.fields
	}
	fields := make([]pgproto3.FieldDescription, len(p.ps.desc))
	copy(fields, p.ps.desc)
	for i := range fields {
		switch len(p.resultFormats) {
		case 0:
			fields[i].Format = 0
		case 1:
			fields[i].Format = p.resultFormats[0]
		default:
			if i < len(p.resultFormats) {
				fields[i].Format = p.resultFormats[i]
			}
		}
	}
	p.fields = fields
	return fields
}

// pendingQueue is the FIFO shared by the two directions of a session.
type pendingQueue struct {
	mu    sync.Mutex
	items []*pending
	head  int
	// batches counts the entries answered by ReadyForQuery (Query,
	// FunctionCall, Sync): the batches in flight.
	batches int
	// failing is set from an extended-protocol error until the Sync's
	// ReadyForQuery: the server skips every request until that Sync.
	failing bool
	// skipping is set while the server is failing a batch whose Sync the
	// client has not sent yet: until that Sync, the server answers nothing
	// the client sends, so nothing is queued.
	skipping bool
	// settledc, when set, is closed when the queue becomes empty or the
	// server starts failing the batch: either way nothing more will answer
	// the requests queued before the next Sync.
	settledc chan struct{}
	// readyc, when set, is closed when an entry answered by ReadyForQuery
	// leaves the queue.
	readyc chan struct{}
	// deferred holds the Syncs the client sent as COPY input, which
	// pgwarden keeps from the server until the COPY's outcome is known
	// (see deferSync); each says whether CopyData had been sent before it.
	deferred []deferredSync
	// release counts the deferred Syncs to send the server before the
	// client's next request: a failed COPY would not have read them.
	release int
	// outcomec, when set, is closed when the outcome of the COPY that
	// deferred Syncs is known.
	outcomec chan struct{}
	// copyLines counts the line ends of the CopyData the client sent
	// since the last COPY FROM STDIN ended (copyInput).
	copyLines int64
	// copyWork is set while Syncs are deferred or to be released: the
	// client -> server goroutine looks at it, without the lock, before
	// every request.
	copyWork atomic.Bool
	// batchSeq is the number of the last entry queued that ReadyForQuery
	// answers.
	// Written under mu, read without it by nextBatch.
	batchSeq atomic.Uint64
	// copyIn is set while the server reads the client's messages as the
	// input of a COPY FROM STDIN: what the client sends then is not a
	// request, and the server answers none of it.
	copyIn bool
	// roomc, when set, is closed when no more than lowWater entries are
	// left (see room).
	roomc    chan struct{}
	lowWater int
}

func (q *pendingQueue) push(p *pending) {
	q.mu.Lock()
	q.pushLocked(p)
	q.mu.Unlock()
}

// pushLocked is push with q.mu held.
func (q *pendingQueue) pushLocked(p *pending) {
	if q.skipping {
		if p.kind != pendSync {
			return
		}
		q.skipping = false
	}
	if p.kind.endsWithReady() {
		q.batches++
		p.batch = q.batchSeq.Add(1)
	} else {
		p.batch = q.batchSeq.Load() + 1
	}
	if len(q.items) == cap(q.items) && q.head >= len(q.items)/2 {
		// Reuse the room of answered entries rather than grow: a queue
		// that never empties must not keep every entry it ever held.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, p)
}

// nextBatch is the number the next entry answered by ReadyForQuery will
// have: the batch a request sent now belongs to.
func (q *pendingQueue) nextBatch() uint64 { return q.batchSeq.Load() + 1 }

// peek returns the oldest entry that awaits an answer, or nil.
func (q *pendingQueue) peek() *pending {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.dropCopyEnds()
	if q.head == len(q.items) {
		return nil
	}
	return q.items[q.head]
}

// dropCopyEnds removes CopyDone and CopyFail entries from the head: outside
// a COPY the server ignores them. q.mu is held.
func (q *pendingQueue) dropCopyEnds() {
	for q.head < len(q.items) && q.items[q.head].kind == pendCopyEnd {
		q.items[q.head] = nil
		q.head++
	}
	if q.head == len(q.items) && q.head > 0 {
		q.items, q.head = q.items[:0], 0
		q.signalSettled()
	}
}

// pop removes the oldest entry.
func (q *pendingQueue) pop() {
	q.mu.Lock()
	if q.head < len(q.items) {
		if q.items[q.head].kind.endsWithReady() {
			q.failing = false
			q.batches--
			q.signalReady()
		}
		q.items[q.head] = nil
		q.head++
		q.dropCopyEnds()
		q.signalRoom()
	}
	q.mu.Unlock()
}

// signalReady wakes a waiter for the end of a batch; q.mu is held.
func (q *pendingQueue) signalReady() {
	if q.readyc != nil {
		close(q.readyc)
		q.readyc = nil
	}
}

// beginCopyIn runs when the server starts a COPY FROM STDIN for the head
// entry: from then on it reads the client's messages as COPY input, up to a
// CopyDone or CopyFail, ignoring Sync and Flush; any other message fails
// the COPY. The entries queued behind the head were sent after the COPY's
// statement, so the server reads them as that input, and a CopyDone or
// CopyFail among them ends the COPY. Their Syncs, sent before pgwarden
// knew of the COPY, are taken as read by it: in an inspected session only
// a Sync held past HoldTimeout gets there (see relay's mayCopyIn).
// Waiters are woken: the server waits for input, not for them.
// https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-COPY
func (q *pendingQueue) beginCopyIn() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.copyIn = true
	if q.head < len(q.items) {
		kept := q.items[:q.head+1]
		rest := q.items[q.head+1:]
		for i, e := range rest {
			if e.kind == pendSync && q.copyIn {
				q.batches--
				continue
			}
			if q.copyIn {
				q.copyIn = false
				if e.kind == pendCopyEnd {
					continue
				}
			}
			kept = append(kept, rest[i])
		}
		clear(q.items[len(kept):])
		q.items = kept
	}
	q.signalReady()
	q.signalSettled()
	q.signalRoom()
}

// endCopyIn records that the client ended its COPY input (CopyDone,
// CopyFail). When the server has not begun a COPY yet but requests are in
// flight, it may begin one before reading this message: the end is queued
// for beginCopyIn to find.
func (q *pendingQueue) endCopyIn() {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.copyIn:
		q.copyIn = false
	case q.head < len(q.items) && !q.skipping:
		q.items = append(q.items, &pending{kind: pendCopyEnd})
	}
}

// copyInEnded records that the server ended a COPY FROM STDIN itself:
// later client messages are requests again. The deferred Syncs are then
// settled. PostgreSQL ignores each Sync it reads as COPY input, but a COPY
// that fails (ok false) stops reading: the Syncs after the failing input
// are read as requests, the first ending the error's skip. Which input
// failed cannot be told from outside, so pgwarden decides, and sends what
// it decided: a completed COPY read them all, and so did one that failed
// on a CopyFail, a cancel or a timeout (canceled); one whose error names
// the line it failed on (failLine, from its context) read the Syncs sent
// before that line's end and none after; one that failed otherwise on its
// input read those sent before the first whole line of CopyData (a line
// fails only once whole), unless no line was sent (dataSent) and the
// client had not ended its input, and none of those sent after it.
func (q *pendingQueue) copyInEnded(ok, canceled bool, failLine int64) (release int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	dataSent := q.copyLines > 0
	q.copyLines = 0
	// The client had ended its input (CopyDone, CopyFail): a COPY that
	// read no CopyData failed on that end, having read every Sync first.
	clientEnded := !q.copyIn
	q.copyIn = false
	if !ok && !canceled {
		for _, d := range q.deferred {
			switch {
			case failLine > 0:
				// The error names its line: PostgreSQL reads its input
				// one CopyData at a time as a line needs it, so it read
				// the Syncs sent before that line's end, and no other.
				if d.lines >= failLine {
					q.release++
				}
			case d.afterData || (!dataSent && !clientEnded):
				q.release++
			}
		}
	}
	q.deferred = q.deferred[:0]
	q.copyWork.Store(q.release > 0)
	if q.outcomec != nil {
		close(q.outcomec)
		q.outcomec = nil
	}
	return q.release
}

// copyInput counts the line ends of a CopyData the client sent: a COPY
// in text or CSV fails on a line only once the line is whole, and a failed
// COPY's error names the line it failed on. The count is the queue's, under
// its lock, so that a Sync deferred as COPY input and the COPY's end see
// it in one order; the COPY's end takes it.
func (q *pendingQueue) copyInput(lines int64) {
	q.mu.Lock()
	q.copyLines += lines
	q.mu.Unlock()
}

// deferredSync is a Sync sent as COPY input: whether a line end had been
// sent before it, and how many.
type deferredSync struct {
	afterData bool
	lines     int64
}

// pushSync queues a Sync, unless the server reads it as COPY input: then
// it is deferred, with whether CopyData came before it, and pushSync
// returns false: the Sync is not to be sent.
func (q *pendingQueue) pushSync() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.copyIn {
		q.deferred = append(q.deferred, deferredSync{afterData: q.copyLines > 0, lines: q.copyLines})
		q.copyWork.Store(true)
		return false
	}
	q.pushLocked(&pending{kind: pendSync})
	return true
}

// copyOutcome returns a channel that is closed when the outcome of the
// COPY that deferred Syncs is known, or nil when there is nothing to wait
// for. A Sync (sync) sent while the COPY lasts waits for nothing; inCopy
// reports that the COPY lasts as far as pgwarden knows.
func (q *pendingQueue) copyOutcome(sync bool) (ch <-chan struct{}, inCopy bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.deferred) == 0 || (sync && q.copyIn) {
		return nil, q.copyIn
	}
	if q.outcomec == nil {
		q.outcomec = make(chan struct{})
	}
	return q.outcomec, q.copyIn
}

// forgetDeferred takes the deferred Syncs as read by their COPY, whose
// outcome did not come in time.
func (q *pendingQueue) forgetDeferred() {
	q.mu.Lock()
	q.deferred = q.deferred[:0]
	q.copyWork.Store(q.release > 0)
	q.mu.Unlock()
}

// takeRelease returns the number of deferred Syncs to send now.
func (q *pendingQueue) takeRelease() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.release
	q.release = 0
	q.copyWork.Store(len(q.deferred) > 0)
	return n
}

// signalSettled wakes a settled waiter; q.mu is held.
func (q *pendingQueue) signalSettled() {
	if q.settledc != nil {
		close(q.settledc)
		q.settledc = nil
	}
}

// settled returns a channel that is closed once every entry has been
// answered, the server is skipping to the next Sync or reading COPY input,
// or nil if that is already so.
func (q *pendingQueue) settled() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) || q.failing || q.copyIn {
		return nil
	}
	if q.settledc == nil {
		q.settledc = make(chan struct{})
	}
	return q.settledc
}

// awaitingReady returns a channel that is closed when the next entry
// answered by ReadyForQuery leaves the queue (or the server stops waiting
// for it), or nil when there is none or the server reads COPY input.
func (q *pendingQueue) awaitingReady() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.batches == 0 || q.copyIn {
		return nil
	}
	if q.readyc == nil {
		q.readyc = make(chan struct{})
	}
	return q.readyc
}

// skipToSync drops the entries an extended-protocol error makes the server
// skip: everything up to, not including, the next Sync. If that Sync is not
// queued yet, what the client sends before it is not queued either.
func (q *pendingQueue) skipToSync() {
	q.mu.Lock()
	q.failing = true
	q.signalSettled()
	for q.head < len(q.items) && q.items[q.head].kind != pendSync {
		if q.items[q.head].kind.endsWithReady() {
			// A Query sent before the Sync is skipped by the server too:
			// whoever waits for its ReadyForQuery waits no more.
			q.batches--
			q.signalReady()
		}
		q.items[q.head] = nil
		q.head++
	}
	if q.head == len(q.items) {
		q.skipping = true
		q.items, q.head = q.items[:0], 0
	}
	q.signalRoom()
	q.mu.Unlock()
}

// isFailing reports whether the server is skipping to the next Sync.
func (q *pendingQueue) isFailing() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.failing
}

// len reports the number of entries waiting for answers.
func (q *pendingQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}

// onlyBatchAfterHead reports whether nothing that executes SQL waits behind
// the head's batch: a cancel aimed at the head can then only stop the head or
// statements of its own batch, which an error there would skip anyway.
func (q *pendingQueue) onlyBatchAfterHead() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		return true
	}
	i := q.head
	if !q.items[i].kind.endsWithReady() {
		for i++; i < len(q.items) && q.items[i].kind != pendSync; i++ {
		}
	}
	for i++; i < len(q.items); i++ {
		if q.items[i].kind.executes() {
			return false
		}
	}
	return true
}

var errMalformed = errors.New("malformed message")

// cstring splits a NUL-terminated string off the front of b.
func cstring(b []byte) (s, rest []byte, err error) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, errMalformed
	}
	return b[:i], b[i+1:], nil
}

// bindNames decodes the names and result formats of a Bind body, and
// returns its parameter section (format codes and values, aliasing body)
// without decoding the values.
func bindNames(body []byte) (portalName, stmtName, params []byte, resultFormats []int16, err error) {
	if portalName, body, err = cstring(body); err != nil {
		return
	}
	if stmtName, body, err = cstring(body); err != nil {
		return
	}
	params = body
	// parameter format codes
	if len(body) < 2 {
		return nil, nil, nil, nil, errMalformed
	}
	n := int(binary.BigEndian.Uint16(body))
	if len(body) < 2+2*n+2 {
		return nil, nil, nil, nil, errMalformed
	}
	body = body[2+2*n:]
	// parameter values
	n = int(binary.BigEndian.Uint16(body))
	body = body[2:]
	for ; n > 0; n-- {
		if len(body) < 4 {
			return nil, nil, nil, nil, errMalformed
		}
		l := int32(binary.BigEndian.Uint32(body))
		body = body[4:]
		if l > 0 {
			if int(l) > len(body) {
				return nil, nil, nil, nil, errMalformed
			}
			body = body[l:]
		}
	}
	params = params[:len(params)-len(body)]
	if len(body) < 2 {
		return nil, nil, nil, nil, errMalformed
	}
	n = int(binary.BigEndian.Uint16(body))
	body = body[2:]
	if len(body) < 2*n {
		return nil, nil, nil, nil, errMalformed
	}
	if n > 0 {
		resultFormats = make([]int16, n)
		for i := range resultFormats {
			resultFormats[i] = int16(binary.BigEndian.Uint16(body[2*i:]))
		}
	}
	return portalName, stmtName, params, resultFormats, nil
}

// parseParamOIDs decodes the parameter types that follow the query text in
// a Parse body.
func parseParamOIDs(rest []byte) ([]uint32, error) {
	if len(rest) < 2 {
		return nil, errMalformed
	}
	n := int(binary.BigEndian.Uint16(rest))
	if n == 0 {
		return nil, nil
	}
	rest = rest[2:]
	if len(rest) < 4*n {
		return nil, errMalformed
	}
	oids := make([]uint32, n)
	for i := range oids {
		oids[i] = binary.BigEndian.Uint32(rest[4*i:])
	}
	return oids, nil
}

// decodeDataRow splits a DataRow body into its values, reusing dst. NULL is a
// nil slice; values alias body.
func decodeDataRow(body []byte, dst [][]byte) ([][]byte, error) {
	if len(body) < 2 {
		return dst, errMalformed
	}
	n := int(binary.BigEndian.Uint16(body))
	rp := 2
	dst = dst[:0]
	for ; n > 0; n-- {
		if len(body)-rp < 4 {
			return dst, errMalformed
		}
		l := int32(binary.BigEndian.Uint32(body[rp:]))
		rp += 4
		if l < 0 {
			dst = append(dst, nil)
			continue
		}
		if int(l) > len(body)-rp {
			return dst, errMalformed
		}
		dst = append(dst, body[rp:rp+int(l):rp+int(l)])
		rp += int(l)
	}
	return dst, nil
}

// encodeDataRow appends a DataRow frame holding values (nil is NULL).
func encodeDataRow(dst []byte, values [][]byte) []byte {
	n := headerLen + 2
	for _, v := range values {
		n += 4 + len(v)
	}
	dst = append(dst, 'D')
	dst = binary.BigEndian.AppendUint32(dst, uint32(n-1))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(values)))
	for _, v := range values {
		if v == nil {
			dst = binary.BigEndian.AppendUint32(dst, 0xFFFFFFFF)
			continue
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// copyFields decodes a RowDescription body into fields the caller owns.
func copyFields(body []byte) ([]pgproto3.FieldDescription, error) {
	var rd pgproto3.RowDescription
	if err := rd.Decode(body); err != nil {
		return nil, err
	}
	fields := make([]pgproto3.FieldDescription, len(rd.Fields))
	copy(fields, rd.Fields)
	for i := range fields {
		fields[i].Name = bytes.Clone(fields[i].Name)
	}
	return fields, nil
}

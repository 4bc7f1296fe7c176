package fleetstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/peerwatch/peerwatch/sensor/store"
)

// The journal is a series of append-only segment files beside the store
// file, "<store file>.journal-<n, 20 digits>", where n is the journal mark
// of the flush that started the segment (records below it may still follow
// in it: they were waiting for the disk when the flush took its mark).
// A record is
//
//	length   uint32, little endian: the bytes of the body
//	checksum uint32, little endian: CRC32C (Castagnoli) of the body
//	body     number   uint64: the record's journal number
//	         received int64: Unix ns
//	         topic    uint16 length, then the topic
//	         payload  the rest of the body
//
// so that the payload the broker received is written as it is, from its
// own buffer (writev): no copy per message. The numbers of a segment's
// records follow each other, and so do those of one segment and the next.
// Replay stops at the first record that is short, over the bounds or fails
// its checksum: the end of what a crash left (see readSegment).
const (
	journalSuffix  = ".journal-"
	recordHeadSize = 8               // length and checksum
	bodyFixedSize  = 8 + 8 + 2       // number, received, topic length
	maxTopicBytes  = 1<<16 - 1       // the topic length is a uint16
	iovMax         = 1024            // IOV_MAX on Linux
	maxBodyBytes   = MaxJournalBytes // bounds a record's body
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors of decodeRecord.
var (
	// errShortRecord: the buffer ends inside the record.
	errShortRecord = errors.New("record cut short")
	// errBadRecord: the record is not one the journal writes.
	errBadRecord = errors.New("invalid record")
)

// recordHead encodes the part of the record before the payload; the
// checksum covers the body, so the payload is passed to be summed too.
func recordHead(n uint64, received time.Time, topic string, payload []byte) []byte {
	h := make([]byte, recordHeadSize+bodyFixedSize+len(topic))
	body := h[recordHeadSize:]
	binary.LittleEndian.PutUint64(body[0:], n)
	binary.LittleEndian.PutUint64(body[8:], uint64(received.UnixNano()))
	binary.LittleEndian.PutUint16(body[16:], uint16(len(topic)))
	copy(body[bodyFixedSize:], topic)
	binary.LittleEndian.PutUint32(h[0:], uint32(len(body)+len(payload)))
	sum := crc32.Update(crc32.Update(0, castagnoli, body), castagnoli, payload)
	binary.LittleEndian.PutUint32(h[4:], sum)
	return h
}

// decodeRecord decodes the record at the start of b and returns its size.
// The entry's payload is b's bytes, not a copy. It returns errShortRecord
// when b ends inside the record, errBadRecord (wrapped, with the reason)
// when the record is invalid.
func decodeRecord(b []byte) (journalEntry, int, error) {
	if len(b) < recordHeadSize {
		return journalEntry{}, 0, errShortRecord
	}
	end, err := recordSize(b)
	if err != nil {
		return journalEntry{}, 0, err
	}
	if len(b) < end {
		return journalEntry{}, 0, errShortRecord
	}
	body := b[recordHeadSize:end]
	if sum := crc32.Checksum(body, castagnoli); sum != binary.LittleEndian.Uint32(b[4:]) {
		return journalEntry{}, 0, fmt.Errorf("%w: checksum %08x, the record says %08x", errBadRecord, sum, binary.LittleEndian.Uint32(b[4:]))
	}
	topicLen := int(binary.LittleEndian.Uint16(body[16:]))
	if topicLen == 0 || bodyFixedSize+topicLen > len(body) {
		return journalEntry{}, 0, fmt.Errorf("%w: topic of %d bytes in a body of %d", errBadRecord, topicLen, len(body))
	}
	e := journalEntry{
		n:        binary.LittleEndian.Uint64(body[0:]),
		received: time.Unix(0, int64(binary.LittleEndian.Uint64(body[8:]))).UTC(),
		topic:    string(body[bodyFixedSize : bodyFixedSize+topicLen]),
		payload:  body[bodyFixedSize+topicLen:],
	}
	return e, end, nil
}

// recordSize is the size, head and body, of the record whose head starts
// b, or an error when its length is out of bounds.
func recordSize(b []byte) (int, error) {
	size := binary.LittleEndian.Uint32(b)
	if size < bodyFixedSize || size > maxBodyBytes {
		return 0, fmt.Errorf("%w: body of %d bytes, want %d to %d", errBadRecord, size, bodyFixedSize, maxBodyBytes)
	}
	return recordHeadSize + int(size), nil
}

// segment is one journal file.
type segment struct {
	start uint64 // the number in its name
	path  string
	// records written to it since Open, or found in it at Open.
	records int
}

func segmentPath(base string, start uint64) string {
	return fmt.Sprintf("%s%s%020d", base, journalSuffix, start)
}

// listSegments returns the journal segments of the store file base, in
// the order they were written.
func listSegments(base string) ([]segment, error) {
	// Not filepath.Glob: the data directory's name may hold * ? [.
	entries, err := os.ReadDir(filepath.Dir(base))
	if err != nil {
		return nil, err
	}
	var segs []segment
	for _, e := range entries {
		digits, ok := strings.CutPrefix(e.Name(), filepath.Base(base)+journalSuffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(digits, 10, 64)
		if err != nil || e.Name() != filepath.Base(segmentPath(base, n)) {
			continue // not a name the journal gives
		}
		segs = append(segs, segment{start: n, path: segmentPath(base, n)})
	}
	slices.SortFunc(segs, func(a, b segment) int {
		if a.start < b.start {
			return -1
		}
		return 1
	})
	return segs, nil
}

// segmentEnd says where a segment's sound records end.
type segmentEnd struct {
	good int64 // the offset after the last sound record
	size int64 // the file's size
	// why is the reason the records stop before size: the record at good
	// is cut short, invalid or out of sequence (nil when good == size).
	why error
}

// readSegment reads the records of the segment at path, calling fn with
// each, in order; next is the lowest number the first record may have (0:
// any), and the number after the last sound record is returned with where
// the sound records end.
func readSegment(path string, next uint64, fn func(journalEntry) error) (uint64, segmentEnd, error) {
	f, err := os.Open(path)
	if err != nil {
		return next, segmentEnd{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return next, segmentEnd{}, err
	}
	end := segmentEnd{size: fi.Size()}
	r := bufio.NewReaderSize(f, 256<<10)
	for end.good < end.size {
		head, err := r.Peek(recordHeadSize)
		if err != nil {
			end.why = errShortRecord
			break
		}
		size, err := recordSize(head)
		if err != nil {
			end.why = err
			break
		}
		// A buffer per record: what fn keeps of the payload stays valid.
		buf := make([]byte, size)
		if _, err := io.ReadFull(r, buf); err != nil {
			end.why = errShortRecord
			break
		}
		e, n, err := decodeRecord(buf)
		if err != nil {
			end.why = err
			break
		}
		// Numbers increase; they may skip: the numbers of a batch whose
		// write failed (not acknowledged) are not written again.
		if next != 0 && e.n < next {
			end.why = fmt.Errorf("%w: number %d, want %d or more", errBadRecord, e.n, next)
			break
		}
		if err := fn(e); err != nil {
			return next, end, err
		}
		next = e.n + 1
		end.good += int64(n)
	}
	return next, end, nil
}

// journal appends records to the current segment, and starts a new one at
// each flush. Its methods are safe for concurrent use.
type journal struct {
	base string // the store file
	sync store.SyncPolicy

	// mu is held while a batch is written, and by rotate: the segment a
	// flush rotates away holds only records written before it took its
	// mark.
	mu     sync.Mutex
	f      *os.File // the current segment
	cur    segment
	size   int64     // of the current segment's sound records
	old    []segment // the segments before cur, oldest first
	dirty  bool      // written since the last fsync
	broken error     // a failed write that could not be undone: no more until the next segment
}

// openJournal continues the last of the segments segs (read and cut to
// their sound records), or starts the first at start.
func openJournal(base string, segs []segment, start uint64, sync store.SyncPolicy) (*journal, error) {
	j := &journal{base: base, sync: sync}
	if len(segs) == 0 {
		f, cur, err := j.create(start)
		if err != nil {
			return nil, err
		}
		j.f, j.cur = f, cur
		return j, nil
	}
	j.old, j.cur = segs[:len(segs)-1], segs[len(segs)-1]
	f, err := os.OpenFile(j.cur.path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open journal segment: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open journal segment: %w", err)
	}
	j.f, j.size = f, fi.Size()
	return j, nil
}

// create makes the segment for the records from mark start on.
func (j *journal) create(start uint64) (*os.File, segment, error) {
	path := segmentPath(j.base, start)
	// O_EXCL: a segment of that name holds records; never cut them.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, segment{}, fmt.Errorf("create journal segment: %w", err)
	}
	if j.sync != store.SyncNever {
		// The new name must last: the records in it are acknowledged once
		// the file itself is synced.
		if err := syncPath(filepath.Dir(path)); err != nil {
			_ = f.Close()
			_ = os.Remove(path)
			return nil, segment{}, fmt.Errorf("create journal segment %s: %w", path, err)
		}
	}
	return f, segment{start: start, path: path}, nil
}

// write appends the records of a batch to the current segment, in one
// writev (or a few, past IOV_MAX), synced once with SyncAlways.
func (j *journal) write(batch []pendingRecord) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return store.ErrClosed
	}
	if j.broken != nil {
		return fmt.Errorf("journal segment %s unusable until the next flush: %w", j.cur.path, j.broken)
	}
	iovs := make([][]byte, 0, min(2*len(batch), iovMax))
	off := j.size
	writeOut := func() error {
		for len(iovs) > 0 {
			n, err := unix.Pwritev(int(j.f.Fd()), iovs, off)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return err
			}
			if n <= 0 {
				return io.ErrShortWrite
			}
			off += int64(n)
			iovs = consumed(iovs, n)
		}
		return nil
	}
	var err error
	for _, r := range batch {
		iovs = append(iovs, r.head, r.payload)
		if len(iovs) >= iovMax-1 {
			if err = writeOut(); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = writeOut()
	}
	if err == nil && j.sync == store.SyncAlways {
		err = j.f.Sync()
	}
	if err != nil {
		// Cut what this batch wrote, so that the records after it follow
		// the last sound one; if that fails too, the segment takes no more.
		if terr := j.f.Truncate(j.size); terr != nil {
			j.broken = err
		}
		return fmt.Errorf("write journal segment %s: %w", j.cur.path, err)
	}
	j.size = off
	j.cur.records += len(batch)
	j.dirty = j.sync == store.SyncEverySecond
	return nil
}

// consumed drops the first n bytes of iovs.
func consumed(iovs [][]byte, n int) [][]byte {
	for n > 0 && len(iovs) > 0 {
		if n < len(iovs[0]) {
			iovs[0] = iovs[0][n:]
			return iovs
		}
		n -= len(iovs[0])
		iovs = iovs[1:]
	}
	for len(iovs) > 0 && len(iovs[0]) == 0 {
		iovs = iovs[1:]
	}
	return iovs
}

// syncDirty syncs the current segment if it was written since the last
// sync (SyncEverySecond).
func (j *journal) syncDirty() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil || !j.dirty {
		return nil
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sync journal segment %s: %w", j.cur.path, err)
	}
	j.dirty = false
	return nil
}

// rotate starts a new segment for the records from mark on, unless the
// current one is empty, and returns the start of the segment now current:
// the segments before it may go (prune) once a checkpoint with this mark
// is durable. mark is taken by take, called under the journal's lock so
// that no record is written between the two.
func (j *journal) rotate(take func() uint64) (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	mark := take()
	if j.f == nil {
		return 0, store.ErrClosed
	}
	if j.size == 0 && j.broken == nil {
		return j.cur.start, nil
	}
	// The new segment first: when it cannot be made, the current one goes
	// on, and the flush fails.
	f, next, err := j.create(max(mark, j.cur.start+1))
	if err != nil {
		return 0, err
	}
	// A segment that fails to close is kept, as the others, until a flush
	// covers it; this flush fails.
	cerr := j.closeCurrent()
	j.old = append(j.old, j.cur)
	j.f, j.cur, j.size, j.dirty, j.broken = f, next, 0, false, nil
	if cerr != nil {
		return 0, cerr
	}
	return j.cur.start, nil
}

// closeCurrent syncs (unless SyncNever) and closes the current segment.
func (j *journal) closeCurrent() error {
	var err error
	if j.sync != store.SyncNever && j.broken == nil {
		err = j.f.Sync()
	}
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close journal segment %s: %w", j.cur.path, err)
	}
	return nil
}

// prune deletes the segments before the one that started at start, and
// returns how many records they held.
func (j *journal) prune(start uint64) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	records := 0
	var err error
	for len(j.old) > 0 && j.old[0].start < start {
		if rerr := os.Remove(j.old[0].path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("delete journal segment: %w", rerr)
			break
		}
		records += j.old[0].records
		j.old = j.old[1:]
	}
	return records, err
}

// files returns the number of segments and their bytes.
func (j *journal) files() (n int, bytes int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, s := range append(j.old, j.cur) {
		if fi, err := os.Stat(s.path); err == nil {
			n++
			bytes += fi.Size()
		}
	}
	return n, bytes
}

// close syncs (unless SyncNever) and closes the current segment.
func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return store.ErrClosed
	}
	err := j.closeCurrent()
	j.f = nil
	return err
}

// syncPath syncs the file or directory at path (through a descriptor of
// its own: fsync syncs the file, whoever opened it); a directory synced
// keeps the names created in it.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

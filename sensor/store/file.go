package store

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The file is buntdb's append-only log: RESP arrays of "set key value
// [ex|ae n]", "del key" and "flushdb". buntdb's own loader is lenient in ways
// that lose data: it silently truncates the file at the first command that
// runs past the end (whatever follows, when a corrupted length makes a
// command swallow the rest), it panics on an empty or short command name,
// and after NUL bytes or an empty array it seeks to the wrong offset and
// overwrites records. So the store reads the file first with scanLog, which
// follows buntdb's rules (and is stricter where buntdb would misbehave), and
// hands buntdb only a file that it will load exactly.

// logScan is what scanLog found in a file.
type logScan struct {
	exists bool  // the file is there (a missing file is an empty log)
	size   int64 // file size
	// good is the offset after the last complete command: the file is
	// sound up to there. When good < size the rest is an unfinished write
	// (and any NUL bytes a crash left after it).
	good int64
	// tail reports non-NUL bytes after good: a command cut short.
	tail bool
}

// errLogInvalid reports content that is not an unfinished write at the end
// but damage: buntdb would refuse or mis-load it.
var errLogInvalid = errors.New("not a valid buntdb log")

// maxCommandParts bounds a command's array length; the store writes five.
const maxCommandParts = 64

// scanLog reads the log at path. A missing file is an empty log.
func scanLog(path string) (logScan, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return logScan{}, nil
	}
	if err != nil {
		return logScan{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return logScan{}, err
	}
	if !fi.Mode().IsRegular() {
		return logScan{}, fmt.Errorf("%s is not a regular file", path)
	}
	sc := logScan{exists: true, size: fi.Size()}
	// A crash can leave the end of the file zero-filled: parse only up to
	// the last non-NUL byte, so that a command cut short and followed by
	// zeros is recognised as unfinished rather than invalid.
	end, err := lastNonNUL(f, sc.size)
	if err != nil {
		return logScan{}, err
	}
	p := &logParser{r: bufio.NewReaderSize(io.LimitReader(f, end), 64<<10)}
	for {
		start := p.off
		err := p.command()
		if err == io.EOF && p.off == start {
			sc.good = start // clean end of the log
			break
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			sc.good, sc.tail = start, true // a command cut short
			break
		}
		if err != nil {
			return logScan{}, fmt.Errorf("%w: at offset %d: %w", errLogInvalid, start, err)
		}
	}
	return sc, nil
}

// lastNonNUL returns the offset after the last byte of the file that is not
// NUL (0 when there is none).
func lastNonNUL(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		n := min(int64(len(buf)), end)
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		for k := n - 1; k >= 0; k-- {
			if buf[k] != 0 {
				return end - n + k + 1, nil
			}
		}
		end -= n
	}
	return 0, nil
}

// logParser reads RESP commands the way buntdb's readLoad does.
type logParser struct {
	r   *bufio.Reader
	off int64
}

// part keeps what the checks need of a command part: its length and, for
// short parts, its bytes (command names, expiry arguments).
type part struct {
	n    int
	text string // only when n <= 64
}

// command reads one command. It returns io.EOF at a clean end before the
// command, io.ErrUnexpectedEOF inside it, and another error when the
// command is invalid. NUL bytes between commands are refused: buntdb skips
// them but then loses track of its offset.
func (p *logParser) command() error {
	c, err := p.r.ReadByte()
	if err != nil {
		return err // io.EOF: clean end
	}
	if c == 0 {
		return errors.New("NUL byte between commands")
	}
	if err := p.r.UnreadByte(); err != nil {
		return err
	}
	n, err := p.header('*')
	if err != nil {
		return err
	}
	if n == 0 || n > maxCommandParts {
		return fmt.Errorf("command of %d parts", n)
	}
	parts := make([]part, 0, n)
	for range n {
		size, err := p.header('$')
		if err != nil {
			return err
		}
		pt := part{n: size}
		if size <= 64 {
			b := make([]byte, size+2)
			if _, err := io.ReadFull(p.r, b); err != nil {
				return unexpected(err)
			}
			p.off += int64(size + 2)
			if b[size] != '\r' || b[size+1] != '\n' {
				return errors.New("part not terminated by CRLF")
			}
			pt.text = string(b[:size])
		} else {
			if _, err := p.r.Discard(size); err != nil {
				return unexpected(err)
			}
			p.off += int64(size)
			var crlf [2]byte
			if _, err := io.ReadFull(p.r, crlf[:]); err != nil {
				return unexpected(err)
			}
			p.off += 2
			if crlf != [2]byte{'\r', '\n'} {
				return errors.New("part not terminated by CRLF")
			}
		}
		parts = append(parts, pt)
	}
	return checkCommand(parts)
}

// header reads a "*<n>\r\n" or "$<n>\r\n" line.
func (p *logParser) header(kind byte) (int, error) {
	line, err := p.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, fmt.Errorf("%c line too long", kind)
		}
		if len(line) > 0 && line[0] != kind {
			// Not the start of a command cut short: garbage.
			return 0, fmt.Errorf("bad %c line %q", kind, line[:min(len(line), 16)])
		}
		return 0, unexpected(err)
	}
	p.off += int64(len(line))
	if len(line) < 4 || line[0] != kind || line[len(line)-2] != '\r' {
		return 0, fmt.Errorf("bad %c line %q", kind, line)
	}
	digits := line[1 : len(line)-2]
	if len(digits) > 9 {
		return 0, fmt.Errorf("%c length %s too large", kind, digits)
	}
	n := 0
	for _, d := range digits {
		if d < '0' || d > '9' {
			return 0, fmt.Errorf("bad %c line %q", kind, line)
		}
		n = n*10 + int(d-'0')
	}
	return n, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// checkCommand applies buntdb's rules for set, del and flushdb.
func checkCommand(parts []part) error {
	name := parts[0]
	if name.n < 3 || name.text == "" {
		return fmt.Errorf("bad command name of %d bytes", name.n)
	}
	switch {
	case strings.EqualFold(name.text[:3], "set"):
		if len(parts) != 3 && len(parts) != 5 {
			return fmt.Errorf("set with %d parts", len(parts))
		}
		if len(parts) == 5 {
			if arg := strings.ToLower(parts[3].text); arg != "ex" && arg != "ae" {
				return fmt.Errorf("set with option %q", parts[3].text)
			}
			if _, err := strconv.ParseInt(parts[4].text, 10, 64); err != nil || parts[4].n > 64 {
				return fmt.Errorf("set with expiry %q", parts[4].text)
			}
		}
	case strings.EqualFold(name.text[:3], "del"):
		if len(parts) != 2 {
			return fmt.Errorf("del with %d parts", len(parts))
		}
	case strings.EqualFold(name.text, "flushdb"):
	default:
		return fmt.Errorf("unknown command %q", name.text)
	}
	return nil
}

// asideName returns "<path>.damaged-<unix time>", with a suffix when that
// name is taken.
func asideName(path string, now time.Time) string {
	base := fmt.Sprintf("%s.damaged-%d", path, now.Unix())
	name := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
			return name
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}

// moveAside renames the file at path to a new damaged-name and returns it.
func moveAside(path string) (string, error) {
	aside := asideName(path, time.Now())
	if err := os.Rename(path, aside); err != nil {
		return "", err
	}
	return aside, nil
}

// cutTail copies the bytes of path from off to its end into a new
// damaged-name file and truncates path at off.
func cutTail(path string, off int64) (string, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	aside := asideName(path, time.Now())
	out, err := os.OpenFile(aside, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, io.NewSectionReader(f, off, 1<<62))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(aside)
		return "", fmt.Errorf("keep the unfinished write in %s: %w", aside, err)
	}
	if err := f.Truncate(off); err != nil {
		return "", err
	}
	return aside, f.Sync()
}

// ErrLocked reports a store file that another Store (in this process or
// another) has open.
var ErrLocked = errors.New("store is open elsewhere")

// lockFile takes an exclusive lock on path (created if needed). buntdb
// replaces the data file when it shrinks it, so the lock is on a file of
// its own.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

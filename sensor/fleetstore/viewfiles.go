package fleetstore

import (
	"bufio"
	"cmp"
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
	"time"

	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/store"
)

// View files: the windows' per-sensor views live in files of their own
// beside the store file, not in it. At 10,000 sensors one window's views
// are about 110 MB, and the current minute's change at every flush: as
// buntdb records they were written twice (checkpoint, then records) and
// copied again at every rewrite of the file, and a full checkpoint of
// every window could pass a record's bound.
//
// A flush writes the views of the shards that changed in one window into
// one new file, "<store file>.views/<level>_<start, Unix s>_<generation>",
// and syncs it; the window's record then lists, for each generation whose
// file it still reads, the shards taken from that file (viewFile). The
// record is written with the checkpoint (see Flush), so a crash before it
// leaves a file no record names, deleted by the next flush; after it, the
// files the record no longer names are deleted. A window that would read
// maxViewFiles files or more is written whole instead
// (collector.RewriteViews).
//
// A file is "PWF1", the views as collector.WriteViews encodes them, and
// the CRC32C of the views (uint32, little endian).

const (
	viewDirSuffix  = ".views"
	viewFileMagic  = "PWF1"
	viewFileMin    = len(viewFileMagic) + 4 // the magic and the checksum
	viewFileSuffix = ".pwv"
	maxViewFiles   = 8
	viewGenDigits  = 20
	viewNameSep    = "_"
)

// MaxViewFileBytes bounds a view file: one window's views of every sensor
// (about 110 MB for a minute at 10,000 sensors; an hour or a day, whose
// sensors' ASes add up, more). A flush that would write a larger one
// fails, naming the window, rather than leave a file Open refuses.
const MaxViewFileBytes = 8 << 30

// maxViewGen bounds generations: one a flush, so never reached, but a
// file name or record could say otherwise, and 0 is "no file".
const maxViewGen = 1 << 62

// errViewDamaged: a view file is missing, or not what its window record
// says. Any other error reading it (permissions, I/O) is not damage: Open
// fails, and leaves the files as they are.
var errViewDamaged = errors.New("view file damaged")

// viewFile is one entry of a window record's view_files: the shards whose
// views are read from the file of generation Gen.
type viewFile struct {
	Gen    uint64 `json:"gen"`
	Shards []int  `json:"shards"`
}

// windowRecord is a window record: the window, and where its views are.
type windowRecord struct {
	collector.WindowState
	ViewFiles []viewFile `json:"view_files,omitempty"`
}

// viewIndex is the generation of the file that holds each shard's views
// of one window; 0: the shard has none.
type viewIndex [collector.ViewShards]uint64

// files lists the index as a window record does, by generation.
func (x *viewIndex) files() []viewFile {
	var out []viewFile
	for shard, gen := range x {
		if gen == 0 {
			continue
		}
		i := slices.IndexFunc(out, func(f viewFile) bool { return f.Gen == gen })
		if i < 0 {
			i = len(out)
			out = append(out, viewFile{Gen: gen})
		}
		out[i].Shards = append(out[i].Shards, shard)
	}
	slices.SortFunc(out, func(a, b viewFile) int { return cmp.Compare(a.Gen, b.Gen) })
	return out
}

// indexOf checks a window record's view_files and returns them as an
// index.
func indexOf(files []viewFile) (*viewIndex, error) {
	if len(files) > maxViewFiles { // what Flush writes
		return nil, fmt.Errorf("view_files: %d files, limit %d", len(files), maxViewFiles)
	}
	var x viewIndex
	for _, f := range files {
		if f.Gen == 0 || f.Gen > maxViewGen || len(f.Shards) == 0 {
			return nil, fmt.Errorf("view_files: generation %d with %d shards", f.Gen, len(f.Shards))
		}
		for _, shard := range f.Shards {
			if shard < 0 || shard >= collector.ViewShards || x[shard] != 0 {
				return nil, fmt.Errorf("view_files: shard %d out of range or listed twice", shard)
			}
			x[shard] = f.Gen
		}
	}
	return &x, nil
}

func viewDir(path string) string { return path + viewDirSuffix }

// viewFileName is the name of a window's view file of generation gen; the
// window key is "window:<level>:<start>".
func viewFileName(window string, gen uint64) string {
	rest := strings.TrimPrefix(window, prefixWindow)
	return fmt.Sprintf("%s%s%0*d%s", strings.Replace(rest, ":", viewNameSep, 1), viewNameSep, viewGenDigits, gen, viewFileSuffix)
}

// parseViewFileName is viewFileName's inverse.
func parseViewFileName(name string) (window string, gen uint64, ok bool) {
	rest, ok := strings.CutSuffix(name, viewFileSuffix)
	i := strings.LastIndex(rest, viewNameSep)
	if !ok || i < 0 {
		return "", 0, false
	}
	gen, err := strconv.ParseUint(rest[i+1:], 10, 64)
	level, start, ok := strings.Cut(rest[:i], viewNameSep)
	if err != nil || !ok || gen == 0 || gen > maxViewGen {
		return "", 0, false
	}
	window = prefixWindow + level + ":" + start
	return window, gen, viewFileName(window, gen) == name
}

// writeViews writes the view file of views to w.
func writeViews(w io.Writer, views []*collector.SensorView) error {
	if _, err := io.WriteString(w, viewFileMagic); err != nil {
		return err
	}
	sum := crc32.New(castagnoli)
	if err := collector.WriteViews(io.MultiWriter(w, sum), views); err != nil {
		return err
	}
	_, err := w.Write(binary.LittleEndian.AppendUint32(nil, sum.Sum32()))
	return err
}

// decodeViewFile decodes the content of a view file.
func decodeViewFile(b []byte) ([]*collector.SensorView, error) {
	if len(b) < viewFileMin || string(b[:len(viewFileMagic)]) != viewFileMagic {
		return nil, errors.New("not a view file")
	}
	body, sum := b[len(viewFileMagic):len(b)-4], b[len(b)-4:]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(sum) {
		return nil, errors.New("checksum mismatch")
	}
	return collector.DecodeViews(body)
}

// makeDir creates the directory at path unless it exists, and syncs its
// parent when it created it.
func makeDir(path string) error {
	err := os.Mkdir(path, 0o700)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncPath(filepath.Dir(path))
}

// writeViewFile creates the view file of views at path, which must not
// exist, syncs it unless sync is false, and returns its size.
func writeViewFile(path string, views []*collector.SensorView, sync bool) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	// The writes of collector.WriteViews, 512 KiB each, go straight
	// through.
	lw := &limitWriter{w: f, left: MaxViewFileBytes}
	w := bufio.NewWriter(lw)
	err = writeViews(w, views)
	if err == nil {
		err = w.Flush()
	}
	size := MaxViewFileBytes - lw.left
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return 0, err
	}
	return size, nil
}

// errViewFileTooLarge: a window's views would make a view file larger
// than Open reads; the write stops there.
var errViewFileTooLarge = fmt.Errorf("larger than %d bytes, the bound of a view file (--keep-per-sensor bounds the windows that keep per-sensor views)", int64(MaxViewFileBytes))

// limitWriter writes to w until left bytes are written, then fails.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(b []byte) (int, error) {
	if int64(len(b)) > l.left {
		return 0, errViewFileTooLarge
	}
	n, err := l.w.Write(b)
	l.left -= int64(n)
	return n, err
}

// readViewFile reads and decodes the view file at path.
func readViewFile(path string) ([]*collector.SensorView, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", errViewDamaged, err)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > MaxViewFileBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errViewDamaged, fi.Size(), int64(MaxViewFileBytes))
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	views, err := decodeViewFile(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errViewDamaged, err)
	}
	return views, nil
}

// loadViews reads the views of the window at key from the files its index
// names: each file's views of the shards the index takes from it. An
// error names the file.
func loadViews(dir, key string, x *viewIndex) ([]*collector.SensorView, error) {
	var out []*collector.SensorView
	for _, f := range x.files() {
		path := filepath.Join(dir, viewFileName(key, f.Gen))
		views, err := readViewFile(path)
		if err != nil {
			return nil, fmt.Errorf("view file %s: %w", path, err)
		}
		found := map[int]bool{}
		for _, v := range views {
			if shard := collector.ViewShard(v.Sensor); x[shard] == f.Gen {
				out = append(out, v)
				found[shard] = true
			}
		}
		for _, shard := range f.Shards {
			if !found[shard] {
				return nil, fmt.Errorf("view file %s: %w: no views of shard %d, which the window record takes from it", path, errViewDamaged, shard)
			}
		}
	}
	slices.SortFunc(out, func(a, b *collector.SensorView) int { return strings.Compare(a.Sensor, b.Sensor) })
	return out, nil
}

// viewFileGens lists the view files in dir by window, with the highest
// generation among them. A name the store does not give is left out.
func viewFileGens(dir string) (map[string][]uint64, uint64, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	files := map[string][]uint64{}
	var high uint64
	for _, e := range entries {
		if window, gen, ok := parseViewFileName(e.Name()); ok {
			files[window] = append(files[window], gen)
			high = max(high, gen)
		}
	}
	return files, high, nil
}

// writeViewFiles writes the views cp gives of each window into a view
// file of a new generation, synced with its name unless SyncNever, and
// returns the index of every window of cp as its record will name it, and
// the bytes written. A window in whole, or whose views are gone, starts
// from an empty index; the others from the one of the last good flush.
func (s *Store) writeViewFiles(cp *collector.Checkpoint, whole map[string]bool) (map[string]*viewIndex, int64, error) {
	s.viewGen++
	gen, dir, sync := s.viewGen, viewDir(s.path), s.sync != store.SyncNever
	indexes := make(map[string]*viewIndex, len(cp.Windows))
	var size int64
	var err error
	if slices.ContainsFunc(cp.Windows, func(w collector.WindowState) bool { return len(w.Views) > 0 }) {
		err = makeDir(dir)
	}
	for _, w := range cp.Windows {
		key := windowKey(w.Level, w.Start)
		x := new(viewIndex)
		if old := s.views[key]; old != nil && !s.needViews && !whole[key] && !w.ViewsGone {
			*x = *old
		}
		indexes[key] = x
		if len(w.Views) == 0 || err != nil {
			continue
		}
		n, werr := writeViewFile(filepath.Join(dir, viewFileName(key, gen)), w.Views, sync)
		if werr != nil {
			err = fmt.Errorf("write the views of %s: %w", key, werr)
		}
		size += n
		for _, v := range w.Views {
			x[collector.ViewShard(v.Sensor)] = gen
		}
	}
	if size > 0 && err == nil && sync {
		if serr := syncPath(dir); serr != nil { // the new files' names
			err = fmt.Errorf("sync %s: %w", dir, serr)
		}
	}
	return indexes, size, err
}

// viewFilesSize is the number of view files in dir and their size.
func viewFilesSize(dir string) (n int, size int64) {
	entries, _ := os.ReadDir(dir) // none when it does not exist yet
	for _, e := range entries {
		if _, _, ok := parseViewFileName(e.Name()); !ok {
			continue
		}
		if fi, err := e.Info(); err == nil {
			n++
			size += fi.Size()
		}
	}
	return n, size
}

// pruneViewFiles deletes the view files that no window's index names:
// those a flush replaced, of windows gone, or left by a flush that failed.
func (s *Store) pruneViewFiles() error {
	dir := viewDir(s.path)
	files, _, err := viewFileGens(dir)
	if err != nil {
		return err
	}
	var errs error
	for window, gens := range files {
		x := s.views[window]
		for _, gen := range gens {
			if x != nil && slices.Contains(x[:], gen) {
				continue
			}
			if err := os.Remove(filepath.Join(dir, viewFileName(window, gen))); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = errors.Join(errs, err)
			}
		}
	}
	return errs
}

// moveAside renames the journal segments and the view directory of a
// store file that is new: they belong to a file moved aside or deleted.
// Replayed into an empty collector, the segments would give it the
// messages of a few seconds as its whole state.
func (s *Store) moveAside() error {
	segs, err := listSegments(s.path)
	if err != nil {
		return fmt.Errorf("list journal segments: %w", err)
	}
	paths := []string{viewDir(s.path)}
	for _, seg := range segs {
		paths = append(paths, seg.path)
	}
	now := time.Now().Unix()
	for _, path := range paths {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		aside := fmt.Sprintf("%s.aside-%d", path, now)
		for i := 1; ; i++ { // a name not taken by an earlier start
			if _, err := os.Stat(aside); errors.Is(err, os.ErrNotExist) {
				break
			}
			aside = fmt.Sprintf("%s.aside-%d-%d", path, now, i)
		}
		if err := os.Rename(path, aside); err != nil {
			return fmt.Errorf("move %s aside: %w", path, err)
		}
		s.log.Error("journal segment or view files without their store file: moved aside", "path", path, "aside", aside)
	}
	return nil
}

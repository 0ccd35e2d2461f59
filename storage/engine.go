package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tuskdb/tusk/fencing"
)

// FsyncPolicy says when appended data is made durable.
type FsyncPolicy int

const (
	// FsyncAlways acknowledges (WaitDurable) only after a group-commit
	// fdatasync, and exposes to consumers only synced records.
	FsyncAlways FsyncPolicy = iota
	// FsyncInterval syncs dirty logs every Options.FsyncInterval.
	FsyncInterval
	// FsyncNever syncs only when a segment rolls and on Close.
	FsyncNever
)

// ParseFsyncPolicy parses "always", "interval" or "never".
func ParseFsyncPolicy(s string) (FsyncPolicy, error) {
	switch s {
	case "always":
		return FsyncAlways, nil
	case "interval":
		return FsyncInterval, nil
	case "never":
		return FsyncNever, nil
	}
	return 0, fmt.Errorf("storage: fsync policy %q: want always, interval or never", s)
}

func (p FsyncPolicy) String() string {
	switch p {
	case FsyncAlways:
		return "always"
	case FsyncInterval:
		return "interval"
	case FsyncNever:
		return "never"
	}
	return "FsyncPolicy(" + strconv.Itoa(int(p)) + ")"
}

// Options configure an Engine.
type Options struct {
	Dir                    string
	Fsync                  FsyncPolicy
	FsyncInterval          time.Duration // for FsyncInterval; <= 0 → 100ms
	FS                     FS            // nil → OSFS()
	Logger                 zerolog.Logger
	RetentionCheckInterval time.Duration    // 0 → 30s
	Now                    func() time.Time // nil → time.Now
	// IO selects the segment-file I/O backend (IOAuto by default).
	IO IOMode
	// SyncMethod selects how a group commit of several segment files
	// makes them durable (SyncAuto by default: one syncfs; syncfs.go).
	SyncMethod SyncMethod
	// RecycleSegments lets a log overwrite the file of a segment that
	// retention dropped when it next rolls, instead of creating a new
	// file and deleting the old one (recycle.go).
	RecycleSegments bool
	// DeleteRate paces the deleter: bytes of deleted segment data freed
	// per second, in ftruncate steps (docs/io-and-scale.md, section 2).
	// <= 0: unpaced (still in steps). The broker's default is the
	// storage.delete-rate setting.
	DeleteRate int64
	// BackgroundIORate is the budget in bytes per second of background
	// writers off the acknowledgement path (learner copies, see
	// Log.WaitBackgroundIO). <= 0: unlimited.
	BackgroundIORate int64
	// DropBehind is the page-cache budget, in bytes across all logs, of
	// durable appended data kept cached behind the logs' ends; older
	// durable bytes are dropped from the page cache after each group
	// commit (dropbehind.go). <= 0: off (the kernel's LRU decides).
	DropBehind int64
	// MaxOpenFiles bounds the segment files holding a descriptor at once
	// (fdpool.go); past it the least recently used one is closed, and
	// reopened when next used. <= 0: the soft RLIMIT_NOFILE less a
	// quarter of it (at least 1,024) for connections; a larger value is
	// lowered to that too.
	MaxOpenFiles int
	// OpenFileIdle closes a segment file's descriptor once it has not
	// been used (appended to, synced or read) for this long, so an idle
	// replica holds none. <= 0: only MaxOpenFiles closes files.
	OpenFileIdle time.Duration

	ioFault    ioFault // tests: rewrites io_uring completion results
	clock      ioClock // tests: the budgets' time source (nil: wall clock)
	deleteStep int64   // tests: bytes per ftruncate step (0: defaultDeleteStep)
}

// TopicPartition names a partition log.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string { return tp.Topic + "-" + strconv.Itoa(int(tp.Partition)) }

const deletedSuffix = ".deleted"

// Engine owns the partition logs under one directory, the group-commit
// syncer and the retention loop.
type Engine struct {
	opts Options
	fs   FS
	io   ioBackend
	log  zerolog.Logger
	now  func() time.Time

	mu   sync.Mutex
	logs map[TopicPartition]*Log
	// busy holds the partitions being recovered (OpenLog) or deleted
	// (DeleteLog, until its rename is durable); the channel is closed when
	// that is done. Both run their I/O without mu.
	busy   map[TopicPartition]chan struct{}
	closed bool

	dirtyMu sync.Mutex
	dirty   map[*Log]struct{} // logs with appends not yet synced

	// ids caches the topic IDs recorded in log directories (topicid.go),
	// so the reconcile pass's per-partition check reads no file.
	ids topicIDCache
	// creates combines concurrent CreateLogs calls into one batch
	// (createlogs.go).
	creates createQueue

	stats engineStats
	// noPrealloc: the file system cannot preallocate (prealloc.go).
	noPrealloc atomic.Bool
	// files bounds the open segment-file descriptors (fdpool.go).
	files *filePool

	// lease returns this node's lease (SetLeaseSource); nil: appends to
	// replicated logs are not checked against a lease (an engine used
	// without a cluster around it, as in unit tests).
	lease atomic.Pointer[func() fencing.Lease]

	// Background I/O (deleter.go, iobudget.go).
	deleter  *deleter
	bgBudget *ioBudget // Options.BackgroundIORate; nil: unlimited
	bgStats  bgStats
	tombSeq  atomic.Int64 // makes *.deleted names unique
	bgCancel context.CancelFunc

	// drops shares Options.DropBehind among the logs (syncer only);
	// dropq feeds the dropper goroutine (nil: drop-behind off).
	drops dropActivity
	dropq chan dropJob

	kick chan struct{} // pokes the syncer (capacity 1)
	stop chan struct{}
	wg   sync.WaitGroup
}

// Open prepares the data directory and starts the syncer and retention
// goroutines. It opens no log.
func Open(opts Options) (*Engine, error) {
	if opts.Dir == "" {
		return nil, errors.New("storage: open: empty Dir")
	}
	if opts.FS == nil {
		opts.FS = OSFS()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RetentionCheckInterval <= 0 {
		opts.RetentionCheckInterval = 30 * time.Second
	}
	if opts.FsyncInterval <= 0 {
		opts.FsyncInterval = 100 * time.Millisecond
	}
	switch opts.Fsync {
	case FsyncAlways, FsyncInterval, FsyncNever:
	default:
		return nil, fmt.Errorf("storage: open: unknown fsync policy %d", opts.Fsync)
	}
	opts.Dir = filepath.Clean(opts.Dir)
	if err := opts.FS.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: open: create %s: %w", opts.Dir, err)
	}
	if err := opts.FS.SyncDir(filepath.Dir(opts.Dir)); err != nil {
		return nil, fmt.Errorf("storage: open: sync parent of %s: %w", opts.Dir, err)
	}
	be, note, err := newBackend(opts.IO, opts.ioFault)
	if err != nil {
		return nil, fmt.Errorf("storage: open: %w", err)
	}
	if note != "" {
		opts.Logger.Warn().Str("io", opts.IO.String()).Msg(note)
	}
	e := &Engine{
		opts:  opts,
		fs:    opts.FS,
		io:    be,
		log:   opts.Logger,
		now:   opts.Now,
		logs:  map[TopicPartition]*Log{},
		dirty: map[*Log]struct{}{},
		kick:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
	}
	e.io, note = withSyncfs(be, opts.SyncMethod, opts.FS, opts.Dir, &e.stats.syncfs)
	if note != "" {
		opts.Logger.Warn().Str("commit_sync", opts.SyncMethod.String()).Msg(note)
	}
	be = e.io
	_, syncfs := be.(*syncfsBackend)
	opts.Logger.Info().Str("io", opts.IO.String()).Str("backend", be.describe()).Bool("syncfs", syncfs).Msg("storage I/O backend")
	e.files = newFilePool(fileLimit(opts.MaxOpenFiles), func(path string, flag int) (File, error) {
		f, err := e.fs.OpenFile(path, flag, 0o644)
		if err != nil {
			return nil, err
		}
		return e.io.wrap(f), nil
	})
	if opts.MaxOpenFiles > 0 && e.files.limit < opts.MaxOpenFiles {
		opts.Logger.Warn().Int("max_open_files", opts.MaxOpenFiles).Int("applied", e.files.limit).Msg("storage.max-open-files lowered below the open-file limit")
	}
	clock := opts.clock
	if clock == nil {
		clock = wallClock{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.bgCancel = cancel
	step := opts.deleteStep
	if step <= 0 {
		step = defaultDeleteStep
	}
	e.deleter = newDeleter(ctx, e.fs, e.log.With().Str("worker", "deleter").Logger(), step,
		newIOBudget(opts.DeleteRate, step, clock, &e.bgStats.throttled), &e.bgStats)
	e.bgBudget = newIOBudget(opts.BackgroundIORate, max(opts.BackgroundIORate/10, 1<<20), clock, &e.bgStats.throttled)
	names, err := e.fs.ReadDir(opts.Dir)
	if err == nil {
		// Logs deleted before a crash or restart: finish their deletion.
		_, err = e.reclaimLeftovers(opts.Dir, names)
	}
	if err != nil {
		cancel()
		if cerr := be.close(); cerr != nil {
			e.log.Error().Err(cerr).Msg("close I/O backend")
		}
		return nil, fmt.Errorf("storage: open: %s: %w", opts.Dir, err)
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.deleter.run()
	}()
	if opts.Fsync != FsyncNever {
		e.wg.Add(1)
		go e.syncLoop()
		if opts.DropBehind > 0 {
			e.dropq = make(chan dropJob, dropQueueLen)
			e.wg.Add(1)
			go e.dropLoop()
		}
	}
	e.wg.Add(1)
	go e.retentionLoop()
	if opts.OpenFileIdle > 0 {
		e.wg.Add(1)
		go e.fileSweepLoop(opts.OpenFileIdle)
	}
	return e, nil
}

// parseLogDir splits "<topic>-<partition>" at the last '-'.
func parseLogDir(name string) (TopicPartition, bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 {
		return TopicPartition{}, false
	}
	p, err := strconv.ParseInt(name[i+1:], 10, 32)
	if err != nil || p < 0 || strconv.FormatInt(p, 10) != name[i+1:] {
		return TopicPartition{}, false
	}
	tp := TopicPartition{Topic: name[:i], Partition: int32(p)}
	if validTopic(tp.Topic) != nil {
		return TopicPartition{}, false
	}
	return tp, true
}

func validTopic(t string) error {
	if t == "" || t == "." || t == ".." || len(t) > 249 {
		return fmt.Errorf("storage: invalid topic name %q", t)
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("storage: invalid topic name %q", t)
		}
	}
	return nil
}

// ListLogDirs returns the partitions that have a directory on disk.
func (e *Engine) ListLogDirs() ([]TopicPartition, error) {
	names, err := e.fs.ReadDir(e.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("storage: list log dirs in %s: %w", e.opts.Dir, err)
	}
	var out []TopicPartition
	for _, n := range names {
		if strings.HasSuffix(n, deletedSuffix) {
			continue
		}
		fi, err := e.fs.Stat(filepath.Join(e.opts.Dir, n))
		if isNotExist(err) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("storage: list log dirs in %s: %w", e.opts.Dir, err)
		}
		if !fi.IsDir() {
			continue
		}
		if tp, ok := parseLogDir(n); ok {
			out = append(out, tp)
		}
	}
	return out, nil
}

func (e *Engine) logDir(tp TopicPartition) string { return filepath.Join(e.opts.Dir, tp.String()) }

// OpenLog opens (recovering) or creates the partition's log. Opening an
// open log returns it unchanged.
func (e *Engine) OpenLog(tp TopicPartition, cfg LogConfig) (*Log, error) {
	if err := validTopic(tp.Topic); err != nil {
		return nil, err
	}
	if tp.Partition < 0 {
		return nil, fmt.Errorf("storage: invalid partition %d", tp.Partition)
	}
	// Recovery runs without e.mu, so logs of different partitions open
	// in parallel (restart time after a crash); one of the same partition
	// waits for the other.
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return nil, fmt.Errorf("storage: open log %s: %w", tp, ErrClosed)
		}
		if l, ok := e.logs[tp]; ok {
			e.mu.Unlock()
			return l, nil
		}
		if ch, busy := e.busy[tp]; busy {
			e.mu.Unlock()
			<-ch
			continue
		}
		done := e.markBusyLocked(tp)
		e.mu.Unlock()

		l, err := e.recoverLog(tp, cfg)

		e.mu.Lock()
		done()
		if err == nil && e.closed {
			err = fmt.Errorf("storage: open log %s: %w", tp, ErrClosed)
			if cerr := l.close(false); cerr != nil {
				e.log.Warn().Err(cerr).Str("tp", tp.String()).Msg("close log opened during shutdown")
			}
		}
		if err != nil {
			e.mu.Unlock()
			return nil, err
		}
		e.logs[tp] = l
		e.mu.Unlock()
		return l, nil
	}
}

// CreateLogAt creates a new, empty log of tp whose first offset is start
// (a replica that copies a partition from a leader whose log no longer
// begins at 0) and opens it. The partition must have no log directory.
func (e *Engine) CreateLogAt(tp TopicPartition, cfg LogConfig, start int64) (*Log, error) {
	return e.CreateLogAtWithProducers(tp, cfg, start, nil)
}

// CreateLogAtWithProducers is CreateLogAt for a log whose producer state
// does not begin empty: producers (the leader's producers whose
// transactions opened below start and are still open) are written as
// the producer snapshot at start before the log opens, so the log, its
// recovery and its truncations count those transactions open, as the
// leader does, though their first batches lie below its start
// (docs/transactions.md, "Learners").
func (e *Engine) CreateLogAtWithProducers(tp TopicPartition, cfg LogConfig, start int64, producers []fencing.ProducerEntry) (*Log, error) {
	if err := validTopic(tp.Topic); err != nil {
		return nil, err
	}
	if tp.Partition < 0 || start < 0 {
		return nil, fmt.Errorf("storage: create log %s at %d: invalid partition or offset", tp, start)
	}
	dir := e.logDir(tp)
	e.mu.Lock()
	e.waitIdleLocked(tp) // a deletion of tp finishes first
	_, open := e.logs[tp]
	busy := e.busy[tp] != nil
	e.mu.Unlock()
	if open || busy {
		return nil, fmt.Errorf("storage: create log %s at %d: the log is open", tp, start)
	}
	if _, err := e.fs.Stat(dir); err == nil {
		return nil, fmt.Errorf("storage: create log %s at %d: a log directory exists", tp, start)
	} else if !isNotExist(err) {
		return nil, fmt.Errorf("storage: create log %s at %d: %w", tp, start, err)
	}
	// The log-start checkpoint comes before any segment: recovery of a
	// directory with it and no segment creates the empty segment at start.
	if err := e.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: create log %s at %d: %w", tp, start, err)
	}
	// The producer snapshot is durable before the checkpoint: a
	// directory without the checkpoint recovers as a log at 0, which the
	// learner restarts again (its snapshot above the log end is dropped).
	if len(producers) > 0 {
		if err := writeFileSync(e.fs, segName(dir, start, snapshotSuffix), encodeSnapshot(producers)); err != nil {
			return nil, fmt.Errorf("storage: create log %s at %d: producer snapshot: %w", tp, start, err)
		}
	}
	if err := writeLogStart(e.fs, dir, start); err != nil {
		return nil, fmt.Errorf("storage: create log %s at %d: %w", tp, start, err)
	}
	if err := e.fs.SyncDir(e.opts.Dir); err != nil {
		return nil, fmt.Errorf("storage: create log %s at %d: sync dir: %w", tp, start, err)
	}
	return e.OpenLog(tp, cfg)
}

// SetLeaseSource gives the engine the node's lease: from then on an append
// to a replicated log must pass fencing.CheckAppend (a live lease, and the
// epoch the log's writer was given with Log.SetWriterEpoch). The function
// must be safe for concurrent use.
func (e *Engine) SetLeaseSource(lease func() fencing.Lease) {
	e.lease.Store(&lease)
}

// Log returns an open log.
func (e *Engine) Log(tp TopicPartition) (*Log, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	l, ok := e.logs[tp]
	return l, ok
}

// markBusyLocked marks tp busy (e.mu held); the returned func, called
// with e.mu held, clears the mark and wakes those waiting on it.
func (e *Engine) markBusyLocked(tp TopicPartition) (done func()) {
	ch := make(chan struct{})
	if e.busy == nil {
		e.busy = map[TopicPartition]chan struct{}{}
	}
	e.busy[tp] = ch
	return func() {
		delete(e.busy, tp)
		close(ch)
	}
}

// waitIdleLocked returns, with e.mu held, once no recovery or deletion of
// tp is in progress; it releases e.mu while it waits.
func (e *Engine) waitIdleLocked(tp TopicPartition) {
	for {
		ch, busy := e.busy[tp]
		if !busy {
			return
		}
		e.mu.Unlock()
		<-ch
		e.mu.Lock()
	}
}

// DeleteLog closes the log and removes its directory. The directory is
// first renamed to a *.deleted tombstone and the rename made durable, so a
// crash leaves the whole log or none of it (Open queues leftover
// tombstones for the deleter). The engine lock is held only to take the
// log out of the engine: the partition stays busy (OpenLog and CreateLogAt
// of it wait) until the rename is durable. The tombstone then goes to the
// deleter, which shrinks its files at the delete rate once the log's last
// Section is closed; DeleteLog does not wait for that.
func (e *Engine) DeleteLog(tp TopicPartition) error {
	e.mu.Lock()
	e.waitIdleLocked(tp) // let a recovery of tp finish first
	l, open := e.logs[tp]
	delete(e.logs, tp)
	done := e.markBusyLocked(tp)
	e.mu.Unlock()

	gone, err := e.tombstoneLog(tp, l, open)
	e.mu.Lock()
	done()
	e.mu.Unlock()
	if err != nil || gone == "" {
		return err
	}
	var readers <-chan struct{}
	if open {
		readers = l.sections.whenIdle()
	}
	e.reclaim(gone, treeSize(e.fs, gone), readers)
	return nil
}

// tombstoneLog closes l (if open) and durably renames tp's directory to a
// tombstone, whose path it returns ("" if there was no directory). tp
// must be marked busy.
func (e *Engine) tombstoneLog(tp TopicPartition, l *Log, open bool) (string, error) {
	if open {
		e.dirtyMu.Lock()
		delete(e.dirty, l)
		e.dirtyMu.Unlock()
		if err := l.close(false); err != nil {
			e.log.Warn().Err(err).Str("tp", tp.String()).Msg("close deleted log")
		}
	}
	dir := e.logDir(tp)
	if _, err := e.fs.Stat(dir); err != nil {
		if isNotExist(err) {
			return "", nil
		}
		return "", fmt.Errorf("storage: delete log %s: %w", tp, err)
	}
	gone := e.tombstoneName(dir)
	e.ids.forget(tp) // whatever the rename's outcome: the next read looks
	if err := e.fs.Rename(dir, gone); err != nil {
		return "", fmt.Errorf("storage: delete log %s: rename: %w", tp, err)
	}
	if err := e.fs.SyncDir(e.opts.Dir); err != nil {
		// The rename may or may not survive a crash; either way the
		// log is whole or gone, and the next Open queues a tombstone.
		return "", fmt.Errorf("storage: delete log %s: sync dir: %w", tp, err)
	}
	return gone, nil
}

// Close stops the syncer and retention loops, then syncs and closes every
// log. It is idempotent.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	logs := make([]*Log, 0, len(e.logs))
	for _, l := range e.logs {
		logs = append(logs, l)
	}
	e.mu.Unlock()
	close(e.stop)
	e.bgCancel() // the deleter stops; what it has not removed waits for the next Open
	e.wg.Wait()
	var errs []error
	// Side by side, as CreateLogs: a close that syncs waits for the disk.
	closeErrs := make([]error, len(logs))
	forEach(len(logs), createLogsParallel, func(i int) { closeErrs[i] = logs[i].close(true) })
	errs = append(errs, closeErrs...)
	if err := e.files.closeAll(); err != nil {
		errs = append(errs, fmt.Errorf("storage: close segment files: %w", err))
	}
	if err := e.io.close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// IOBackend describes the segment-file I/O backend in use, for example
// "syscall", "uring" or "uring (fdatasync), syscall (write, read)".
func (e *Engine) IOBackend() string { return e.io.describe() }

// markDirty records that l has unsynced appends; kick wakes the syncer.
func (e *Engine) markDirty(l *Log, kick bool) {
	e.dirtyMu.Lock()
	e.dirty[l] = struct{}{}
	e.dirtyMu.Unlock()
	if kick {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
}

func (e *Engine) takeDirty() []*Log {
	e.dirtyMu.Lock()
	defer e.dirtyMu.Unlock()
	if len(e.dirty) == 0 {
		return nil
	}
	out := make([]*Log, 0, len(e.dirty))
	for l := range e.dirty {
		out = append(out, l)
	}
	clear(e.dirty)
	return out
}

// syncLoop is the group-commit syncer: every sync covers all appends made
// to a log before it started.
func (e *Engine) syncLoop() {
	defer e.wg.Done()
	var tick <-chan time.Time
	if e.opts.Fsync == FsyncInterval {
		t := time.NewTicker(e.opts.FsyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-e.stop:
			return
		case <-e.kick:
		case <-tick:
		}
		e.syncLogs(e.takeDirty())
	}
}

// syncLogs is one group commit: it pins the active segment of every log
// with unsynced appends, hands all their files to the backend in one batch
// (one io_uring submission on uring), then advances each log's durable
// offset or fences it.
func (e *Engine) syncLogs(logs []*Log) {
	pending := make([]syncTicket, 0, len(logs))
	files := make([]File, 0, len(logs))
	for _, l := range logs {
		if t, ok := l.beginSync(); ok {
			pending = append(pending, t)
			files = append(files, t.seg.f)
		}
	}
	if len(files) == 0 {
		return
	}
	errs := make([]error, len(files))
	began := time.Now()
	e.files.syncFiles(e.io, files, errs)
	e.stats.commitTime.observe(time.Since(began))
	for i, t := range pending {
		t.l.endSync(t, errs[i])
	}
	e.stats.commits.Add(1)
	if budget := e.opts.DropBehind; budget > 0 {
		// After every waiter of this commit was released, to the
		// dropper goroutine (dropbehind.go).
		now := time.Now()
		for i, t := range pending {
			if errs[i] == nil {
				e.queueDrop(dropJob{t: t, window: e.drops.window(budget, now, t.l)})
			}
		}
	}
}

// FileStats returns the segment-file descriptor counters.
func (e *Engine) FileStats() FileStats { return e.files.stats() }

// SyncStats counts group-commit work since Open.
type SyncStats struct {
	Appends int64 // batches appended
	Commits int64 // group commits that synced at least one log
	Fsyncs  int64 // segment fdatasyncs issued by group commits
}

// SyncStats returns the group-commit counters.
func (e *Engine) SyncStats() SyncStats {
	return SyncStats{Appends: e.stats.appends.Load(), Commits: e.stats.commits.Load(), Fsyncs: e.stats.fsyncs.Load()}
}

func (e *Engine) retentionLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.opts.RetentionCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.runRetention()
		}
	}
}

// runRetention applies retention to every open log once.
func (e *Engine) runRetention() {
	e.mu.Lock()
	logs := make([]*Log, 0, len(e.logs))
	for _, l := range e.logs {
		logs = append(logs, l)
	}
	e.mu.Unlock()
	now := e.now()
	for _, l := range logs {
		l.retain(now)
	}
}

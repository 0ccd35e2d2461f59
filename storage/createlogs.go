package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/tuskdb/tusk/fencing"
)

// ErrLogExists is CreateLogs' answer for a log that is open or has a
// directory already: it is left alone (open it with OpenLog).
var ErrLogExists = errors.New("storage: log exists")

// NewLog is one log for CreateLogs.
type NewLog struct {
	TP      TopicPartition
	Config  LogConfig
	TopicID [16]byte // recorded as SetLogTopicID does
}

// createLogsParallel bounds CreateLogs' concurrent file operations: many
// fsyncs in flight share the file system's journal commits.
const createLogsParallel = 16

// syncAllMin is the smallest batch of new logs CreateLogs makes durable
// with one sync of the whole file system (allSyncer, syncfs(2)) instead
// of an fsync of each log's topic ID record and directory: syncfs also
// flushes whatever else is dirty on the file system (unsynced appends of
// other logs with storage.fsync=interval), which a handful of logs is not
// worth.
const syncAllMin = 32

// CreateLogs creates and opens many new logs at once (a reconcile pass
// after topics were created; docs/io-and-scale.md, "Scale"). Each log's
// directory, empty first segment and topic ID record are written, 16 at a
// time; then a batch of at least syncAllMin logs is made durable with one
// syncfs(2) of the file system when the FS can (allSyncer), a smaller one
// with an fsync of each record and each new directory and one of the logs
// directory for all of them. The new logs open without recovery: they are
// known to be empty. An entry whose log is open, being opened or deleted,
// or has a directory gets ErrLogExists and is left alone; one named twice
// is created once (the other gets ErrLogExists). It returns one log or
// error per entry; a created log is durable, with its topic ID, when it is
// returned.
//
// A crash before the sync can leave a new directory whose topic ID
// record is empty or torn; such a record reads as none
// (readLogTopicID), and the log, which was never returned and so never
// written, is adopted by the next topic of its name like any log without
// a record.
//
// Concurrent calls are combined: while one batch is written and synced,
// the calls that come in queue, and the next batch holds all of them
// (as group commit; CreateTopics creates each topic's logs in its own
// call, 64 topics at a time).
func (e *Engine) CreateLogs(specs []NewLog) ([]*Log, []error) {
	return e.creates.do(e, specs)
}

// createQueue combines concurrent CreateLogs calls: a call queues, and
// the first call that finds no batch running starts a goroutine that
// runs batches until the queue is empty, each of every call queued so
// far. (Run by a caller instead, a steady stream of calls would keep it
// running batches for others long after its own was done.)
type createQueue struct {
	mu      sync.Mutex
	queue   []*createCall
	running bool
	calls   int // calls ever queued (tests wait on it)
}

// createCall is one CreateLogs call waiting for its batch.
type createCall struct {
	specs []NewLog
	logs  []*Log
	errs  []error
	done  chan struct{}
}

func (q *createQueue) do(e *Engine, specs []NewLog) ([]*Log, []error) {
	c := &createCall{specs: specs, done: make(chan struct{})}
	q.mu.Lock()
	q.queue = append(q.queue, c)
	q.calls++
	if !q.running {
		q.running = true
		go q.run(e)
	}
	q.mu.Unlock()
	<-c.done
	return c.logs, c.errs
}

// run runs batches until the queue is empty.
func (q *createQueue) run(e *Engine) {
	q.mu.Lock()
	for len(q.queue) > 0 {
		calls := q.queue
		q.queue = nil
		q.mu.Unlock()
		var all []NewLog
		for _, c := range calls {
			all = append(all, c.specs...)
		}
		logs, errs := e.createLogs(all)
		for _, c := range calls {
			n := len(c.specs)
			c.logs, c.errs = logs[:n:n], errs[:n:n]
			logs, errs = logs[n:], errs[n:]
			close(c.done)
		}
		q.mu.Lock()
	}
	q.running = false
	q.mu.Unlock()
}

// createLogs is one CreateLogs batch.
func (e *Engine) createLogs(specs []NewLog) ([]*Log, []error) {
	logs := make([]*Log, len(specs))
	errs := make([]error, len(specs))
	var fresh []int
	dones := map[int]func(){}
	e.mu.Lock()
	taken := make(map[TopicPartition]bool, len(specs))
	for i, sp := range specs {
		switch {
		case e.closed:
			errs[i] = fmt.Errorf("storage: create log %s: %w", sp.TP, ErrClosed)
		case validTopic(sp.TP.Topic) != nil || sp.TP.Partition < 0:
			errs[i] = fmt.Errorf("storage: create log %s: invalid topic or partition", sp.TP)
		case e.logs[sp.TP] != nil || e.busy[sp.TP] != nil || taken[sp.TP]:
			errs[i] = fmt.Errorf("storage: create log %s: %w", sp.TP, ErrLogExists)
		default:
			taken[sp.TP] = true
			fresh = append(fresh, i)
			dones[i] = e.markBusyLocked(sp.TP)
		}
	}
	e.mu.Unlock()
	if len(fresh) == 0 {
		return logs, errs
	}
	syncer, bulk := e.fs.(allSyncer)
	bulk = bulk && len(fresh) >= syncAllMin
	segs := make([]*segFile, len(specs))
	forEach(len(fresh), createLogsParallel, func(k int) {
		i := fresh[k]
		segs[i], errs[i] = e.writeNewLog(specs[i].TP, specs[i].TopicID, !bulk)
	})
	if bulk {
		// One syncfs covers every new file's content and every new
		// directory entry, the logs directory's included.
		if err := syncer.SyncAll(e.opts.Dir); err != nil {
			for _, i := range fresh {
				if errs[i] == nil {
					errs[i] = fmt.Errorf("storage: create log %s: sync file system: %w", specs[i].TP, err)
				}
			}
		}
	} else {
		forEach(len(fresh), createLogsParallel, func(k int) {
			if i := fresh[k]; errs[i] == nil {
				if err := e.fs.SyncDir(e.logDir(specs[i].TP)); err != nil {
					errs[i] = fmt.Errorf("storage: create log %s: sync dir: %w", specs[i].TP, err)
				}
			}
		})
		if err := e.fs.SyncDir(e.opts.Dir); err != nil {
			for _, i := range fresh {
				if errs[i] == nil {
					errs[i] = fmt.Errorf("storage: create log %s: sync %s: %w", specs[i].TP, e.opts.Dir, err)
				}
			}
		}
	}
	e.mu.Lock()
	for _, i := range fresh {
		if errs[i] == nil && e.closed {
			errs[i] = fmt.Errorf("storage: create log %s: %w", specs[i].TP, ErrClosed)
		}
		if errs[i] != nil {
			if segs[i] != nil {
				if err := segs[i].Close(); err != nil {
					e.log.Warn().Err(err).Str("tp", specs[i].TP.String()).Msg("close segment of a log not created")
				}
			}
		} else {
			logs[i] = e.newEmptyLog(specs[i].TP, specs[i].Config, segs[i])
			e.logs[specs[i].TP] = logs[i]
		}
		dones[i]()
	}
	e.mu.Unlock()
	return logs, errs
}

// newLogStruct returns a Log of tp with nothing loaded: recoverLog fills
// it from disk, newEmptyLog as a new log.
func (e *Engine) newLogStruct(tp TopicPartition, cfg LogConfig) *Log {
	return &Log{
		tp: tp, dir: e.logDir(tp), fs: e.fs, policy: e.opts.Fsync, now: e.now, engine: e,
		cfg:         cfg,
		hwOnDisk:    hwUnknown,
		producers:   fencing.NewProducerStates(),
		writerEpoch: fencing.NoWriter,
	}
}

// newEmptyLog is what recoverLog makes of a new log's directory (an empty
// segment at 0, no checkpoint of any kind) without reading it: f is the
// open first segment.
func (e *Engine) newEmptyLog(tp TopicPartition, cfg LogConfig, f *segFile) *Log {
	l := e.newLogStruct(tp, cfg)
	l.segs = []*segment{newSegment(0, f, cfg.indexInterval())}
	l.active().dropOn = true
	if cfg.Replicated {
		l.hwOnDisk = hwNone
		l.replicated = true
	}
	return l
}

// writeNewLog writes a new log's directory, empty first segment (returned
// open) and topic ID record, which it syncs if syncID; no directory entry
// is synced yet. It fails with ErrLogExists if the directory exists.
func (e *Engine) writeNewLog(tp TopicPartition, id [16]byte, syncID bool) (*segFile, error) {
	dir := e.logDir(tp)
	if _, err := e.fs.Stat(dir); err == nil {
		return nil, fmt.Errorf("storage: create log %s: %w", tp, ErrLogExists)
	} else if !isNotExist(err) {
		return nil, fmt.Errorf("storage: create log %s: %w", tp, err)
	}
	if err := e.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: create log %s: %w", tp, err)
	}
	// The record is written in place, not renamed into it: the directory
	// is new and reaches the disk only with the sync that follows (see
	// CreateLogs on a crash before it).
	f, err := e.fs.OpenFile(filepath.Join(dir, topicIDFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("storage: create log %s: topic id: %w", tp, err)
	}
	if _, err := f.WriteAt(topicIDBody(id), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("storage: create log %s: topic id: %w", tp, err)
	}
	if syncID {
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("storage: create log %s: sync topic id: %w", tp, err)
		}
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("storage: create log %s: topic id: %w", tp, err)
	}
	seg, err := e.files.open(segName(dir, 0, logSuffix), os.O_RDWR|os.O_CREATE|os.O_EXCL, false)
	if err != nil {
		return nil, fmt.Errorf("storage: create log %s: first segment: %w", tp, err)
	}
	e.ids.set(tp, id)
	return seg, nil
}

// forEach runs f(0..n-1), at most limit at a time.
func forEach(n, limit int, f func(i int)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(i)
		}()
	}
	wg.Wait()
}

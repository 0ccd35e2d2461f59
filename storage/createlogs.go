package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
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

// CreateLogs creates and opens many new logs at once (a reconcile pass
// after topics were created; docs/io-and-scale.md, "Scale"). Each log's
// directory, empty first segment and topic ID record are written with
// concurrent fsyncs of the record and the new directory, then one fsync
// of the logs directory covers all the new directories, where OpenLog
// and SetLogTopicID take five fsyncs in a row per log. An entry whose log
// is open, being opened or deleted, or has a directory gets ErrLogExists
// and is left alone; one named twice is created once (the other gets
// ErrLogExists). It returns one log or error per entry; a created log is
// durable, with its topic ID, when it is returned.
func (e *Engine) CreateLogs(specs []NewLog) ([]*Log, []error) {
	logs := make([]*Log, len(specs))
	errs := make([]error, len(specs))
	var fresh []int
	var dones []func()
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
			dones = append(dones, e.markBusyLocked(sp.TP))
		}
	}
	e.mu.Unlock()
	if len(fresh) == 0 {
		return logs, errs
	}
	release := func() {
		e.mu.Lock()
		for _, done := range dones {
			done()
		}
		e.mu.Unlock()
	}
	// Write each log's files and sync its topic ID record, then sync
	// each new directory.
	forEach(len(fresh), createLogsParallel, func(k int) {
		i := fresh[k]
		errs[i] = e.writeNewLog(specs[i].TP, specs[i].TopicID)
	})
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
	release()
	// Opening a directory made durable above syncs nothing new.
	forEach(len(fresh), 8, func(k int) {
		if i := fresh[k]; errs[i] == nil {
			logs[i], errs[i] = e.OpenLog(specs[i].TP, specs[i].Config)
		}
	})
	return logs, errs
}

// writeNewLog writes a new log's directory, empty first segment and topic
// ID record (synced, renamed into place); the directory entries are not
// synced yet. It fails with ErrLogExists if the directory exists.
func (e *Engine) writeNewLog(tp TopicPartition, id [16]byte) error {
	dir := e.logDir(tp)
	if _, err := e.fs.Stat(dir); err == nil {
		return fmt.Errorf("storage: create log %s: %w", tp, ErrLogExists)
	} else if !isNotExist(err) {
		return fmt.Errorf("storage: create log %s: %w", tp, err)
	}
	if err := e.fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("storage: create log %s: %w", tp, err)
	}
	f, err := e.fs.OpenFile(segName(dir, 0, logSuffix), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("storage: create log %s: first segment: %w", tp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("storage: create log %s: first segment: %w", tp, err)
	}
	name := filepath.Join(dir, topicIDFile)
	tmp := name + ".tmp"
	if f, err = e.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
		return fmt.Errorf("storage: create log %s: topic id: %w", tp, err)
	}
	if _, err := f.WriteAt(topicIDBody(id), 0); err != nil {
		f.Close()
		return fmt.Errorf("storage: create log %s: topic id: %w", tp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("storage: create log %s: sync topic id: %w", tp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("storage: create log %s: topic id: %w", tp, err)
	}
	if err := e.fs.Rename(tmp, name); err != nil {
		return fmt.Errorf("storage: create log %s: topic id: %w", tp, err)
	}
	e.ids.set(tp, id)
	return nil
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

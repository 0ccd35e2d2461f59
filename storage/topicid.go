package storage

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// topicIDFile records, in each log directory, the ID of the topic the log
// belongs to (Kafka's partition.metadata), so a log left behind by a
// deleted topic is never mistaken for a new topic of the same name.
const topicIDFile = "partition.metadata"

// topicIDCache holds the topic IDs the engine has read or written, by
// partition. Every change of a log directory's topic ID goes through the
// engine (writeNewLog, SetLogTopicID, tombstoneLog), which keeps it
// current; a partition not in it is read from its file. At 10,000
// partitions the reconcile pass after a failover asked for each changed
// partition's ID three times, each an open, read and close
// (docs/io-and-scale.md, "Failover in bulk").
type topicIDCache struct {
	mu  sync.Mutex
	ids map[TopicPartition][16]byte
}

func (c *topicIDCache) get(tp TopicPartition) ([16]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.ids[tp]
	return id, ok
}

func (c *topicIDCache) set(tp TopicPartition, id [16]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = map[TopicPartition][16]byte{}
	}
	c.ids[tp] = id
}

func (c *topicIDCache) forget(tp TopicPartition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.ids, tp)
}

// LogTopicID reads the topic ID recorded for tp; ok is false when none is.
func (e *Engine) LogTopicID(tp TopicPartition) (id [16]byte, ok bool, err error) {
	if id, ok := e.ids.get(tp); ok {
		return id, true, nil
	}
	id, ok, err = e.readLogTopicID(tp)
	if ok && err == nil {
		e.ids.set(tp, id)
	}
	return id, ok, err
}

// readLogTopicID reads tp's topic ID file.
func (e *Engine) readLogTopicID(tp TopicPartition) (id [16]byte, ok bool, err error) {
	name := filepath.Join(e.logDir(tp), topicIDFile)
	f, err := e.fs.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		if isNotExist(err) {
			return id, false, nil
		}
		return id, false, fmt.Errorf("storage: read topic id of %s: %w", tp, err)
	}
	defer f.Close()
	buf := make([]byte, 128)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return id, false, fmt.Errorf("storage: read topic id of %s: %w", tp, err)
	}
	if tornTopicID(buf[:n]) {
		// A crash before CreateLogs' sync of a new log (its record is
		// written in place), which was never returned or written to:
		// no record.
		return id, false, nil
	}
	var hexID string
	for _, line := range strings.Split(string(buf[:n]), "\n") {
		if v, found := strings.CutPrefix(line, "topic_id: "); found {
			hexID = strings.TrimSpace(v)
		}
	}
	b, err := hex.DecodeString(hexID)
	if err != nil || len(b) != 16 {
		return id, false, fmt.Errorf("storage: topic id of %s: malformed %q", tp, hexID)
	}
	copy(id[:], b)
	return id, true, nil
}

// tornTopicID reports whether b is an empty or cut-short topic ID record:
// shorter than a whole one, its fixed beginning as far as that goes, and
// no newline after it (the record's last byte).
func tornTopicID(b []byte) bool {
	p := min(len(b), len(topicIDPrefix))
	return len(b) < len(topicIDPrefix)+32+1 && string(b[:p]) == topicIDPrefix[:p] && !bytes.Contains(b[p:], []byte("\n"))
}

// topicIDPrefix is what every topic ID record begins with.
const topicIDPrefix = "version: 0\ntopic_id: "

// topicIDBody is the content of a topic ID record.
func topicIDBody(id [16]byte) []byte {
	return []byte(topicIDPrefix + hex.EncodeToString(id[:]) + "\n")
}

// SetLogTopicID durably records the topic ID of tp's log, which must be
// open.
func (e *Engine) SetLogTopicID(tp TopicPartition, id [16]byte) error {
	e.ids.forget(tp) // until the new ID is durable, read the file
	dir := e.logDir(tp)
	name := filepath.Join(dir, topicIDFile)
	tmp := name + ".tmp"
	body := topicIDBody(id)
	f, err := e.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("storage: write topic id of %s: %w", tp, err)
	}
	if _, err := f.WriteAt(body, 0); err != nil {
		f.Close()
		return fmt.Errorf("storage: write topic id of %s: %w", tp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("storage: sync topic id of %s: %w", tp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("storage: close topic id of %s: %w", tp, err)
	}
	if err := e.fs.Rename(tmp, name); err != nil {
		return fmt.Errorf("storage: rename topic id of %s: %w", tp, err)
	}
	if err := e.fs.SyncDir(dir); err != nil {
		e.ids.forget(tp) // the file may hold either ID: read it next time
		return fmt.Errorf("storage: sync dir of %s: %w", tp, err)
	}
	e.ids.set(tp, id)
	return nil
}

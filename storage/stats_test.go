package storage

import (
	"context"
	"testing"
)

func TestStatsCountFsyncsAndBatches(t *testing.T) {
	e := openEngine(t, NewCrashFS(), FsyncAlways, nil)
	defer e.Close()
	l := openLog(t, e, LogConfig{RetentionBytes: -1, RetentionMs: -1})
	const n = 10
	var last int64
	for i := 0; i < n; i++ {
		res, _ := appendSpec(t, l, plain(2, 10, 1, byte(i)))
		last = res.LastOffset
	}
	if err := l.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	s := e.Stats()
	if s.FsyncBatches != n || s.Fsyncs < 1 || s.Fsyncs > n {
		t.Fatalf("stats %+v after %d batches made durable", s, n)
	}
}
